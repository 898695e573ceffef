"""Provenance records: what produced a result, signed, exportable as PROV-JSON and FHIR.

A :class:`ProvenanceRecord` is a plain immutable value; building one is pure
(the caller passes the time, run id and environment).  The I/O edges are
:func:`now`, :func:`new_run_id`, :func:`environment` (reads the git checkout
and installed versions) and :func:`load_or_create_key` (the key file).

Signatures are Ed25519 over :func:`medtwin.governance.canonical.canonical_bytes`
of every field except ``signature`` (so the signer key id is signed too).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform as _platform
import stat
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from medtwin.errors import DataError, MedtwinError
from medtwin.governance.canonical import canonical_bytes, digest

__all__ = [
    "KEY_FILENAME", "KeyFileError", "ProvenanceRecord", "environment", "key_id", "load_or_create_key",
    "new_run_id", "now", "output_digest", "record_for_result", "record_for_simulation", "result_view", "sign",
    "signing_payload",
    "verify",
]

#: File name of the private key inside the key directory.
KEY_FILENAME = "medtwin_ed25519.pem"
#: Version of the record layout (part of the signed bytes).
SCHEMA = "medtwin.provenance/1"
#: Distributions whose versions are recorded when installed.
DEPENDENCIES = ("numpy", "scipy", "numba", "pandas", "jax", "jaxlib", "diffrax", "numpyro",
                "cryptography", "prov", "fhir.resources")


class KeyFileError(MedtwinError, PermissionError):
    """The signing key file is unsafe (readable by group/other) or unreadable."""


def _utc_iso(time: str) -> str:
    try:
        parsed = _dt.datetime.fromisoformat(time.replace("Z", "+00:00"))
    except (TypeError, ValueError, AttributeError):
        raise DataError(f"time {time!r} is not an ISO 8601 date-time") from None
    if parsed.utcoffset() != _dt.timedelta(0):
        raise DataError(f"time {time!r} must be in UTC (offset +00:00 or Z)")
    return time


@dataclass(frozen=True, eq=False)
class ProvenanceRecord:
    """Who computed what, from which inputs, with which code, solver and seed.

    Attributes
    ----------
    run_id : str
        A UUID4 string identifying the run.
    operation : str
        What was done, e.g. ``"simulate"``.
    time : str
        UTC ISO 8601 time, e.g. ``"2026-11-25T15:37:00+00:00"`` (validated).
    operator : str
        The person or service that asked for the run.
    input_digests : dict
        Input name -> ``"sha256:..."`` digest.
    model_digest : str or None
        Digest of the model definition.
    output_digest : str or None
        Digest of the whole result.
    output_digests : dict
        Output name -> digest (one per output array).
    code_version : dict
        ``package``, ``version`` and, from a git checkout, ``commit`` and ``dirty``.
    dependencies : dict
        Distribution name -> version.
    solver : dict
        Solver settings (``SolverSettings.as_dict()``).
    platform : dict
        OS, Python and machine.
    seeds : dict
        Name -> seed of every random stream used.
    signer : str or None
        Key id of the signing key (see :func:`key_id`).
    signature : str or None
        Hex Ed25519 signature over every other field.

    Notes
    -----
    Equality and hashing use the canonical bytes of all fields, so two records
    are equal exactly when they would carry the same signature (``1`` differs
    from ``1.0``; NaN equals NaN).

    Examples
    --------
    >>> r = ProvenanceRecord(run_id="00000000-0000-4000-8000-000000000000", operation="simulate",
    ...                      time="2026-11-25T15:37:00+00:00", operator="alice")
    >>> r.signature is None, r == ProvenanceRecord.from_dict(r.as_dict())
    (True, True)
    """

    run_id: str
    operation: str
    time: str
    operator: str
    input_digests: dict = field(default_factory=dict)
    model_digest: str | None = None
    output_digest: str | None = None
    output_digests: dict = field(default_factory=dict)
    code_version: dict = field(default_factory=dict)
    dependencies: dict = field(default_factory=dict)
    solver: dict = field(default_factory=dict)
    platform: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)
    schema: str = SCHEMA
    signer: str | None = None
    signature: str | None = None

    def __post_init__(self):
        _utc_iso(self.time)
        for name in ("run_id", "operation", "operator"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise DataError(f"ProvenanceRecord.{name} must be a non-empty string")
        for name in ("input_digests", "output_digests", "code_version", "dependencies", "solver",
                     "platform", "seeds"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise DataError(f"ProvenanceRecord.{name} must be a mapping, got {type(value).__name__}")
            object.__setattr__(self, name, dict(value))
        canonical_bytes(self.as_dict(), root="record")  # every field must be digestible

    def __eq__(self, other) -> bool:
        if not isinstance(other, ProvenanceRecord):
            return NotImplemented
        return canonical_bytes(self.as_dict()) == canonical_bytes(other.as_dict())

    def __hash__(self) -> int:
        return hash(canonical_bytes(self.as_dict()))

    def as_dict(self) -> dict:
        """All fields as a JSON-ready dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping) -> ProvenanceRecord:
        """Inverse of :meth:`as_dict`."""
        return cls(**dict(data))


def now() -> str:
    """The current UTC time in ISO 8601 (an I/O edge: call it in callers, not in pure code)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def new_run_id() -> str:
    """A fresh UUID4 string."""
    return str(uuid.uuid4())


# ------------------------------------------------------------------ environment (I/O edge)
def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def code_version() -> dict:
    """Package version, plus git commit and dirty flag when medtwin runs from a git checkout."""
    import medtwin

    try:
        version = importlib.metadata.version("medtwin")
    except importlib.metadata.PackageNotFoundError:
        version = getattr(medtwin, "__version__", "unknown")
    out: dict[str, Any] = {"package": "medtwin", "version": version}
    pkg = Path(medtwin.__file__).resolve().parent
    # only trust the repository if it tracks this very package (not e.g. a venv inside a repo)
    if _git(["ls-files", "--error-unmatch", "__init__.py"], pkg) is None:
        return out
    commit = _git(["rev-parse", "HEAD"], pkg)
    status = _git(["status", "--porcelain"], pkg)
    if commit:
        out["commit"] = commit.strip()
        if status is not None:
            out["dirty"] = bool(status.strip())
    return out


def dependency_versions(names=DEPENDENCIES) -> dict:
    """Installed versions of ``names`` (absent distributions are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor()


def platform_info() -> dict:
    """Operating system, Python, machine architecture and CPU model."""
    return {
        "system": _platform.system(), "release": _platform.release(), "machine": _platform.machine(),
        "processor": _cpu_model(), "cpu_count": os.cpu_count() or 0,
        "python": _platform.python_version(), "implementation": _platform.python_implementation(),
    }


def environment() -> dict:
    """The environment part of a record: ``code_version``, ``dependencies`` and ``platform``.

    Examples
    --------
    >>> sorted(environment())
    ['code_version', 'dependencies', 'platform']
    """
    return {"code_version": code_version(), "dependencies": dependency_versions(), "platform": platform_info()}


# ------------------------------------------------------------------ signatures
def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key.

    Examples
    --------
    >>> len(key_id(Ed25519PrivateKey.generate().public_key()))
    16
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signing_payload(record: ProvenanceRecord) -> bytes:
    """The bytes that are signed: canonical bytes of every field except ``signature``."""
    fields = record.as_dict()
    del fields["signature"]
    return canonical_bytes(fields, root="record")


def sign(record: ProvenanceRecord, key: Ed25519PrivateKey) -> ProvenanceRecord:
    """A copy of ``record`` with ``signer`` set to the key id and an Ed25519 ``signature``.

    Examples
    --------
    >>> key = Ed25519PrivateKey.generate()
    >>> r = ProvenanceRecord(run_id="00000000-0000-4000-8000-000000000000", operation="simulate",
    ...                      time="2026-11-25T15:37:00Z", operator="alice")
    >>> s = sign(r, key)
    >>> verify(s, key.public_key()), verify(dataclasses.replace(s, operator="mallory"), key.public_key())
    (True, False)
    """
    unsigned = dataclasses.replace(record, signer=key_id(key.public_key()), signature=None)
    return dataclasses.replace(unsigned, signature=key.sign(signing_payload(unsigned)).hex())


def verify(record: ProvenanceRecord, public_key: Ed25519PublicKey) -> bool:
    """True if ``record`` carries a valid signature by ``public_key`` over all its other fields."""
    if not record.signature or record.signer != key_id(public_key):
        return False
    try:
        public_key.verify(bytes.fromhex(record.signature), signing_payload(record))
    except (InvalidSignature, ValueError):
        return False
    return True


def load_or_create_key(directory) -> Ed25519PrivateKey:
    """Load ``directory/medtwin_ed25519.pem``, creating it (mode 0600, missing folders 0700) if missing.

    The key is written to a private temporary file first and then linked into
    place, so a concurrent caller never reads a half-written key and two
    callers never end up with different keys.

    Raises
    ------
    KeyFileError
        If the key file is accessible by group or other, or is not an Ed25519 PEM key.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     a = load_or_create_key(tmp)
    ...     b = load_or_create_key(tmp)
    ...     oct(os.stat(os.path.join(tmp, KEY_FILENAME)).st_mode & 0o777)
    '0o600'
    >>> key_id(a.public_key()) == key_id(b.public_key())
    True
    """
    from medtwin.io.storage import private_dir, write_private_temp

    directory = private_dir(directory)  # missing folders 0700; several processes may create them at once
    path = directory / KEY_FILENAME
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = write_private_temp(directory, KEY_FILENAME, pem)
        try:
            os.link(tmp, path)  # atomic; fails if another process created the key meanwhile
            return key
        except FileExistsError:
            pass  # load the key the other process created
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        raise KeyFileError(f"refusing signing key {path}: mode {mode:04o} lets group/other read it; "
                           f"run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise KeyFileError(f"cannot read signing key {path}: {err}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path} is not an Ed25519 key")
    return key


# ------------------------------------------------------------------ simulation records
def _plain(value: Any) -> Any:
    """Dataclasses (Regimen, DoseEvent, ...) -> dicts, recursively; other values unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def trajectory_content(trajectory) -> dict:
    """Everything a :class:`~medtwin.core.simulate.Trajectory` holds, as digestible data."""
    return {
        "model": trajectory.model, "times": trajectory.times, "row_patient": trajectory.row_patient,
        "outputs": dict(trajectory.outputs), "output_units": dict(trajectory.output_units),
        "status": trajectory.status, "states": trajectory.states, "state_names": list(trajectory.state_names),
        "shape": None if trajectory.shape is None else list(trajectory.shape), "ids": trajectory.ids,
        "solver": trajectory.solver.as_dict(),
    }


def result_view(result) -> dict:
    """What a record digests of a result: ``content`` (everything), ``outputs`` (named arrays), ``solver`` (how).

    A :class:`~medtwin.core.simulate.Trajectory` is read with
    :func:`trajectory_content`; any other result (a Posterior, a
    PredictiveBand) provides ``provenance_content()`` returning the same three keys.
    """
    if hasattr(result, "provenance_content"):
        view = result.provenance_content()
        return {"content": view["content"], "outputs": dict(view["outputs"]), "solver": dict(view["solver"])}
    return {"content": trajectory_content(result), "outputs": dict(result.outputs),
            "solver": result.solver.as_dict()}


def record_for_result(operation: str, model, inputs: Mapping[str, Any], result, operator: str,
                      seeds: Mapping[str, int] | None = None, time: str | None = None, *,
                      run_id: str | None = None, env: Mapping | None = None) -> ProvenanceRecord:
    """An unsigned record for one operation on ``model`` with named ``inputs`` and a ``result``.

    Parameters
    ----------
    operation : str
        What was done (``"simulate"``, ``"simulate_dataset"``, ``"personalize"`` ...).
    model : Model
        The model (digested with ``Model.digest()``).
    inputs : mapping
        Input name -> value; each value is digested (``inputs.<name>``).
    result : Trajectory, or an object with ``provenance_content()``
        The result (see :func:`result_view`); the whole of it and every named array are digested.
    operator : str
        Who asked for the run.
    seeds : mapping, optional
        Name -> seed of every random stream used.
    time, run_id : str, optional
        Default to :func:`now` and :func:`new_run_id` (the only I/O besides ``env``).
    env : mapping, optional
        Result of :func:`environment`; read from this process when omitted.
    """
    env = environment() if env is None else env
    view = result_view(result)
    return ProvenanceRecord(
        run_id=new_run_id() if run_id is None else run_id,
        operation=operation,
        time=now() if time is None else time,
        operator=operator,
        input_digests={name: digest(_plain(value), root=f"inputs.{name}") for name, value in inputs.items()},
        model_digest="sha256:" + model.digest(),
        output_digest=digest(view["content"], root="outputs"),
        output_digests={name: digest(arr, root=f"outputs.{name}") for name, arr in view["outputs"].items()},
        code_version=dict(env.get("code_version", {})),
        dependencies=dict(env.get("dependencies", {})),
        solver=view["solver"],
        platform=dict(env.get("platform", {})),
        seeds=dict(seeds or {}),
    )


def output_digest(result) -> str:
    """Digest of everything a result holds (:func:`result_view`): equal iff bit-identical."""
    return digest(result_view(result)["content"], root="outputs")


def record_for_simulation(model, params_table, regimen_events, times, trajectory, operator: str, seed=None,
                          time: str | None = None, *, run_id: str | None = None,
                          env: Mapping | None = None) -> ProvenanceRecord:
    """An unsigned record for one ``simulate`` call (:func:`record_for_result` with its three inputs).

    Parameters
    ----------
    model : Model
        The simulated model (digested with ``Model.digest()``).
    params_table, regimen_events, times
        The inputs as given to ``simulate`` (mapping/DataFrame/array; Regimen(s) or events; array(s)).
    trajectory : Trajectory
        The result; every output array is digested, and the whole of it.
    operator : str
        Who asked for the run.
    seed : int, optional
        Seed of the random stream, when one was used.
    time, run_id : str, optional
        Default to :func:`now` and :func:`new_run_id` (the only I/O besides ``env``).
    env : mapping, optional
        Result of :func:`environment`; read from this process when omitted.

    Examples
    --------
    >>> import numpy as np
    >>> from medtwin import Regimen, get_model, simulate
    >>> m, r, t = get_model("pk1_iv"), Regimen.single(100.0), np.array([0.0, 1.0])
    >>> rec = record_for_simulation(m, {"CL": 5.0}, r, t, simulate(m, {"CL": 5.0}, r, t), "alice", seed=7)
    >>> sorted(rec.input_digests), list(rec.output_digests), rec.seeds
    (['params', 'regimen', 'times'], ['C'], {'seed': 7})
    """
    return record_for_result("simulate", model, {"params": params_table, "regimen": regimen_events, "times": times},
                             trajectory, operator, None if seed is None else {"seed": seed}, time,
                             run_id=run_id, env=env)
