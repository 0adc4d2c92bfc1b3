"""Arrow bodies in the list layout through HTTP: one FixedSizeList<float64> column ``spectra``
with the axis (and optionally the prefix) in the schema metadata."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
from fastapi.testclient import TestClient

from app.enums import Role
from app.schemas.predict import ARROW_STREAM
from tests.helpers import Actor

URL = "/api/v1/models/titer_pls/versions/1/predict"


def _list_body(
    X: np.ndarray, axis: np.ndarray, compression: str | None = None, **metadata: str
) -> bytes:
    kind = pa.list_(pa.float64(), X.shape[1])
    meta = {b"axis": json.dumps(axis.tolist()).encode()}
    meta |= {k.encode(): v.encode() for k, v in metadata.items()}
    schema = pa.schema([pa.field("spectra", kind)], metadata=meta)
    values = pa.array(np.ascontiguousarray(X).ravel(), type=pa.float64())
    spectra = pa.FixedSizeListArray.from_arrays(values, X.shape[1])
    sink = io.BytesIO()
    options = ipc.IpcWriteOptions(compression=compression)
    with ipc.new_stream(sink, schema, options=options) as writer:
        writer.write_table(pa.table({"spectra": spectra}, schema=schema))
    return sink.getvalue()


def _post(client: TestClient, headers: dict[str, str], content: bytes, media: str) -> Any:
    return client.post(URL, content=content, headers=headers | {"Content-Type": media})


def test_a_list_layout_body_gives_the_json_bodys_predictions(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    plant = actors[Role.plant].headers
    X, axis = trained["X"], trained["axis"]
    as_json = _post(
        client,
        plant,
        orjson.dumps({"spectra": X}, option=orjson.OPT_SERIALIZE_NUMPY),
        "application/json",
    ).json()
    r = _post(client, plant, _list_body(X, axis, prefix="wn_"), ARROW_STREAM)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["input_format"] == "arrow"
    for key in ("predictions", "t2", "q", "flags", "flag_counts"):
        assert out[key] == as_json[key]


def test_a_list_layout_axis_mismatch_is_422_naming_the_first_channel(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    X, axis = trained["X"], trained["axis"].copy()
    axis[7] += 1.0  # 414 -> 415
    r = _post(client, actors[Role.plant].headers, _list_body(X, axis), ARROW_STREAM)
    assert r.status_code == 422
    assert "at channel 7: got 415, expected 414" in r.json()["detail"]


def test_a_list_size_other_than_the_channel_count_is_422(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    X, axis = trained["X"], trained["axis"]
    r = _post(client, actors[Role.plant].headers, _list_body(X[:, :-1], axis[:-1]), ARROW_STREAM)
    assert r.status_code == 422
    assert "lists of 39 values but the model expects 40 channels" in r.json()["detail"]


def test_a_compressed_list_body_is_422_before_it_is_decoded(
    client: TestClient, actors: dict[Role, Actor], trained: dict[str, Any]
) -> None:
    X, axis = trained["X"], trained["axis"]
    r = _post(client, actors[Role.plant].headers, _list_body(X, axis, "zstd"), ARROW_STREAM)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_input"
    assert "send the stream uncompressed" in r.json()["detail"]
