"""A bounded, seeded fuzz of the model-file loader: every mutated file loads or raises ModelFileError, promptly.

Mutations: random byte flips and truncations of the whole file (caught by the ZIP structure or the CRC-32s), and,
inside a well-formed archive with valid CRCs, mutations of ``model.json`` fields and of ``.npy`` headers (which
only the loader's own validation can catch). A file that still loads must give a model that predicts.
"""
import contextlib
import json
import random
import signal
import zipfile

import numpy as np
import pytest

import dropcore
from dropcore import ModelFileError
from dropcore.constraints import MaxNorm
from dropcore.layers import (Add, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input,
                             MaxPooling2D, ReLU, Softmax, SpatialDropout2D)

N_CASES = 200
SECONDS_PER_CASE = 10  # a hang fails the test instead of stalling it
VALUES = [None, True, False, 0, 1, -1, 2, 3, 2**31, 10**12, -(10**12), 0.5, 1.5, -0.0, float("nan"), float("inf"),
          "", "x", "relu", "same", "Dense", "arrays/0.npy", "model.json", [], [1], [0, 0], [None], [3, 3, 3, 4],
          {}, {"class_name": "Dense", "config": {}}]


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds, what):
    def expire(*_):
        raise Hang(f"loading {what} took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A small functional model using most layer types, trained one step so the optimizer has state."""
    dropcore.set_random_seed(0)
    x = Input((8, 8, 2))
    h = BatchNormalization()(Conv2D(3, 3, padding="same", activation="relu", kernel_constraint=MaxNorm(2.0))(x))
    h = ReLU()(Add()([h, Conv2D(3, 1)(h)]))
    h = SpatialDropout2D(0.2, seed=1)(AveragePooling2D(2)(MaxPooling2D(1)(h)))
    h = Dropout(0.5, noise_shape=(None, 4))(Dense(4, activation="relu")(Flatten()(h)))
    model = dropcore.Model(x, Softmax()(Dense(3)(h)))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(8, 8, 8, 2)).astype(np.float32), np.arange(8) % 3, batch_size=8, verbose=0)
    path = tmp_path_factory.mktemp("fuzz") / "original.dropcore"
    model.save(path)
    return path


def members_of(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def zip_bytes(members, path):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path.read_bytes()


def nodes(value, path=()):
    """Every (path, value) inside a JSON value, containers included."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from nodes(v, path + (k,))


def mutate_json(desc, rnd):
    path, value = rnd.choice(list(nodes(desc))[1:])
    parent = desc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    action = rnd.choice(["replace", "replace", "delete", "add_key", "duplicate"])
    if action == "delete":
        del parent[key]
    elif action == "add_key" and isinstance(value, dict):
        value[rnd.choice(["extra", "name", "seed", "class_name"])] = rnd.choice(VALUES)
    elif action == "duplicate" and isinstance(value, list) and value:
        value.append(rnd.choice(value))
    else:
        parent[key] = rnd.choice(VALUES)
    return f"{action} at {list(path)}"


def mutate_npy_header(data, rnd):
    end = data.index(b"\n") + 1
    header = data[:end].decode("latin1")
    choice = rnd.choice(["dtype", "shape", "fortran", "garbage"])
    if choice == "dtype":
        header = header.replace("'<f4'", rnd.choice(["'<f8'", "'|O'", "'>f4'", "'<i4'", "'<f2'"]))
    elif choice == "shape":
        header = header.replace("'shape': (", rnd.choice(["'shape': (2, ", "'shape': (0, ", "'shape': (10**9, ",
                                                          "'shape': (-1, "]))
    elif choice == "fortran":
        header = header.replace("False", "True")
    else:
        i = rnd.randrange(10, end - 1)
        header = header[:i] + rnd.choice("{}()',:x0 ") + header[i + 1:]
    return header.encode("latin1") + data[end:], choice


def mutant(original, rnd, workdir):
    """One mutated file's bytes and a description of the mutation."""
    data = original.read_bytes()
    kind = rnd.choice(["flip", "flip", "truncate", "json", "json", "json", "npy"])
    if kind == "flip":
        out = bytearray(data)
        spots = [rnd.randrange(len(out)) for _ in range(rnd.randint(1, 4))]
        for i in spots:
            out[i] ^= 1 << rnd.randrange(8)
        return kind, bytes(out), f"bits flipped at {spots}"
    if kind == "truncate":
        n = rnd.randrange(len(data))
        return kind, data[:n], f"truncated to {n} bytes"
    members = members_of(original)
    if kind == "json":
        desc = json.loads(members["model.json"])
        what = mutate_json(desc, rnd)
        members["model.json"] = json.dumps(desc).encode()
    else:
        name = rnd.choice([n for n in members if n.endswith(".npy")])
        members[name], what = mutate_npy_header(members[name], rnd)
        what = f"{name}: {what}"
    return kind, zip_bytes(members, workdir / "rezip.tmp"), what


def test_mutated_files_load_or_raise_model_file_error(original, tmp_path):
    rnd = random.Random(20240611)
    outcomes = {}
    target = tmp_path / "mutant.dropcore"
    for case in range(N_CASES):
        kind, data, what = mutant(original, rnd, tmp_path)
        target.write_bytes(data)
        label = f"case {case} ({kind}: {what})"
        try:
            with deadline(SECONDS_PER_CASE, label):
                model = dropcore.load_model(target)
                x = np.zeros((2,) + model.input_shape[1:], np.float32)
                assert np.isfinite(model.predict(x)).all(), label
            result = "loaded"
        except ModelFileError as exc:
            assert str(target) in str(exc), label
            result = "refused"
        except Exception as exc:  # noqa: BLE001 - the point: anything else is a loader bug
            pytest.fail(f"{label} raised {type(exc).__name__}: {exc}")
        outcomes.setdefault(kind, {}).setdefault(result, 0)
        outcomes[kind][result] = outcomes[kind].get(result, 0) + 1
    # Every kind of mutation was exercised and reached the validation (the fuzz is not vacuous).
    assert set(outcomes) == {"flip", "truncate", "json", "npy"}, outcomes
    assert all(o.get("refused", 0) > 0 for o in outcomes.values()), outcomes
