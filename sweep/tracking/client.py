"""The one door to MLflow: the client, the tracking URI, and MLflow's environment.

Every module that talks to MLflow gets its ``MlflowClient`` from :func:`client` and turns a
user's ``--tracking-uri`` into a store address with :func:`resolve_uri`. Importing this module
sets MLflow's environment defaults, so it must come before ``mlflow`` is imported.

It imports only the standard library (MLflow itself on first use): the writer process
(``python -m sweep.tracking.writer``) and the read-only commands (``sweep status``, ``best``,
``export``) import it, and must start fast, without Ray, TensorFlow or pandas.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from pathlib import Path
from typing import Any

# MLflow 3 records a usage event for every client call on a background thread; in a sweep's
# driver that is thousands of events competing with Tune for the GIL (a fifth of the driver's
# samples in benchmarks/scale.py). Off unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=false).
# Set here, where every MlflowClient of the package is made, before mlflow is imported.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Its artifact progress bars are noise in `sweep report --quiet` and a sweep's own output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

DEFAULT_URI = "sqlite:///mlflow.db"


def forget_deleted_stores() -> None:
    """Open again a sqlite store whose file was deleted or replaced since this process opened it.

    MLflow keeps one SQLAlchemy engine per database URI for the life of the process (a class
    attribute of its SqlAlchemyStore) and caches the store objects on it (its store registry's
    lru_cache); there is no public way to drop either, so both private caches are cleared here,
    guarded. Files are recorded when first seen (call it after a sweep too). In a long-lived
    process (the warm session, a notebook) a user's ``rm mlflow.db`` then left the sweep writing
    into the deleted file while its writer process wrote to the new one: the sweep looked
    recorded and was lost. Called before each sweep; costs a few ``stat`` calls."""
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if module is None:  # never opened a sqlite store in this process: nothing to forget, and importing it
        return  # costs ~1.5 s before Ray's start (a fresh CLI process always got here first)
    engines = getattr(getattr(module, "SqlAlchemyStore", None), "_engine_map", None)
    if not isinstance(engines, dict):
        return
    stale = []
    for db_uri in list(engines):
        path = sqlite_path(db_uri)
        if path is None:
            continue
        identity = _file_identity(path)
        if identity is not None and _OPENED.setdefault(db_uri, identity) == identity:
            continue
        stale.append(db_uri)
    _drop_engines(engines, stale)


def _drop_engines(engines: dict[str, Any], db_uris: list[str]) -> None:
    """Dispose of MLflow's engines for ``db_uris`` and of the store objects cached on them."""
    for db_uri in db_uris:
        engine = engines.pop(db_uri, None)
        _OPENED.pop(db_uri, None)
        with contextlib.suppress(Exception):
            engine.dispose()
    if db_uris:  # and the store objects built on those engines, cached by MLflow and by client()
        client.cache_clear()
        with contextlib.suppress(Exception):
            from mlflow.tracking._tracking_service.utils import _tracking_store_registry

            _tracking_store_registry._get_store_with_resolved_uri.cache_clear()


def restore_deleted_sqlite(uri: str) -> bool:
    """Write a sqlite store whose file was deleted under this process back to its path, from the
    connection this process still holds open on it; True if it did.

    A deleted file lives on while a process keeps it open, and that connection still reads every
    row written so far, the write-ahead log included. Copied with sqlite's online backup API
    (``sqlite3.Connection.backup``: a consistent snapshot, in the source's journal mode) into a
    new file beside the path, then renamed onto it, so a reader never sees half a database.
    Only when nothing took the path since (a new file there is left alone). MLflow's engine for
    the URI is then dropped (as :func:`forget_deleted_stores` drops it), so later writes reach
    the restored file. False when this process holds no engine on the store or the copy fails."""
    path = sqlite_path(uri)
    if path is None or path.exists():
        return False
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:
        return False
    engines = getattr(SqlAlchemyStore, "_engine_map", None)
    engine = engines.get(uri) if isinstance(engines, dict) else None
    if engine is None:
        return False
    import sqlite3

    partial = path.with_name(f".{path.name}.restoring-{os.getpid()}")
    try:
        held = engine.raw_connection()
        try:
            with contextlib.closing(sqlite3.connect(partial)) as copy:
                held.driver_connection.backup(copy)
        finally:
            held.close()
        if path.exists():  # someone made a new store there meanwhile: theirs stays
            partial.unlink()
            return False
        os.replace(partial, path)
    except Exception:
        with contextlib.suppress(OSError):
            partial.unlink()
        return False
    _drop_engines(engines, [uri])
    return True


_OPENED: dict[str, tuple[int, int]] = {}  # sqlite URI -> (device, inode) of the file its engine opened


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


@functools.lru_cache(maxsize=8)
def client(uri: str) -> Any:
    """One MlflowClient per URI and process: creating one for a sqlite store builds an engine
    and checks the schema (~0.25 s), and the report, summary and CLI each ask for one."""
    from mlflow.tracking import MlflowClient

    keep_stdout_for_the_user()
    create_sqlite_store(uri)
    return MlflowClient(tracking_uri=uri)


def keep_stdout_for_the_user() -> None:
    """MLflow prints "🏃 View run ... at: URL" on stdout for every run it ends on a tracking
    server: 4 lines per trial before `sweep run --json`'s JSON (which no longer parsed) and
    under --quiet. The process's children (the writer) inherit the setting; a user's own wins."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def set_sweep_http_defaults() -> None:
    """MLflow's HTTP settings while a sweep runs. The writer retries through outages itself
    (and says so); MLflow's own HTTP retries (7, with minutes of backoff) would only hide an
    outage from the user. The user's own settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    keep_stdout_for_the_user()


def default_uri() -> str:
    """``sqlite:///mlflow.db`` in the working directory, as an absolute URI (stable for workers/UI)."""
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def resolve_uri(uri: str | None) -> str:
    """Explicit URI, else ``MLFLOW_TRACKING_URI``, else the embedded sqlite file.

    Credentials in an http(s) URI (``http://user:password@host``) are moved to MLflow's own
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (sent the same way, as basic
    auth), and the URI returned has none: MLflow prints its tracking URI in its own messages
    ("View run ... at: URI") and the sweep's state files hold it, so the password must not be in it.
    Raises SweepConfigError (naming where the URI came from, the password masked) for a password
    with an unencoded ``/ ? # @``, which no URI parser reads as the user meant.
    """
    from sweep.errors import SweepConfigError

    source = "tracking.uri (or --tracking-uri)" if uri else "MLFLOW_TRACKING_URI"
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
    if uri[:7].lower() == "sqlite:":  # SQLITE:///x is the same store: one spelling for every check below
        uri = "sqlite:" + uri[7:]
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        relative = uri[len("sqlite:///") :]
        if relative.split("?")[0] not in ("", ":memory:"):  # in memory: left as it is, for check_reachable to refuse
            uri = f"sqlite:///{Path(relative).resolve()}"
    try:
        return _credentials_to_environment(uri)
    except ValueError as exc:
        raise SweepConfigError(source, "", f"{exc}: {redact(uri)}") from None


# ``scheme://user:password@host...``: everything between the first ``:`` of the userinfo and the
# last ``@`` is the password, as a person typing it meant it (``p@ss#word``, ``pass/word``), where
# ``urlsplit`` cuts the netloc at the first ``/``, ``?`` or ``#`` and so kept the rest in clear.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/?#]*):(?P<password>.*)@(?P<host>[^@]*)$", re.DOTALL)
# a query parameter that carries a credential: ``?token=``, ``password=``, ``secret_key=``,
# ``X-Amz-Signature=``, ``sig=`` (Azure SAS), ``api_key=``, ``access_key=``, ``auth=``
_SECRET_QUERY = re.compile(r"(?P<name>[?&;][^=&#;]*(?:token|secret|passw|pwd|key|sig|credential|auth)[^=&#;]*=)(?P<value>[^&#;]*)", re.IGNORECASE)


def userinfo(uri: str) -> tuple[str, str] | None:
    """(user, password) of ``scheme://user:password@host``, else None; never raises (an invalid
    port or a password with ``/`` or ``@`` in it is still found)."""
    from urllib.parse import unquote

    found = _USERINFO.match(uri)
    return (unquote(found["user"]), unquote(found["password"])) if found else None


def secret_query_names(uri: str) -> list[str]:
    """The names of the query parameters of ``uri`` that carry a credential (``?token=...``)."""
    return [found["name"][1:-1] for found in _SECRET_QUERY.finditer(uri) if found["value"]]


def _credentials_to_environment(uri: str) -> str:
    from urllib.parse import unquote, urlsplit, urlunsplit

    if not uri.lower().startswith(("http://", "https://")) or userinfo(uri) is None:
        return uri
    parts = urlsplit(uri)
    credentials, at, host = parts.netloc.rpartition("@")
    user, colon, password = credentials.partition(":")
    if not at or not colon or userinfo(uri) != (unquote(user), unquote(password)):
        raise ValueError("the password in the tracking URI has a character a URI cannot hold as is (/ ? # @): "
                         "percent-encode it (%2F %3F %23 %40), or set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD instead")
    if user:
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return urlunsplit(parts._replace(netloc=host))


def redact(uri: str) -> str:
    """``uri`` for logs, params, tags and errors: the password of ``user:password@host`` and the
    value of every credential query parameter (``?token=``, ``password=``, ``X-Amz-Signature=``)
    as ``***``. Never raises: a URI too broken to open is still shown without its secret."""
    found = _USERINFO.match(uri)
    if found:
        uri = f"{found['scheme']}{found['user']}:***@{found['host']}"
    return _SECRET_QUERY.sub(lambda m: m["name"] + ("***" if m["value"] else ""), uri)


_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """``text`` (a traceback, an error from MLflow or Ray) with every URI in it :func:`redact`ed."""
    return _URI_IN_TEXT.sub(lambda m: redact(m.group(0)), text)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (its ``?mode=ro``-style query left
    off); None for any other store."""
    return Path(uri[len("sqlite:///") :].split("?", 1)[0]) if uri.startswith("sqlite:///") else None


def store_exists(uri: str) -> bool:
    """False for a sqlite store whose file does not exist. Read-only commands check this first:
    opening a sqlite URI with MLflow creates the file (and its tables)."""
    path = sqlite_path(uri)
    return path.exists() if path is not None else True


def create_sqlite_store(uri: str) -> bool:
    """Create a sqlite store that does not exist yet, as a copy of an empty store; True if it did.

    MLflow makes a new store's tables by running every schema migration since its first release
    (about 50 Alembic steps): 2-3 s of CPU here, paid by the first sweep in every new folder (the
    quickstart) and by the first read of a new store. An empty store made once per MLflow and
    SQLAlchemy version (:func:`_empty_store`, in the user's cache folder) is copied instead, in
    milliseconds; MLflow then checks its schema version on opening it, as it does for any store,
    and adds its Default experiment (left out of the copy, so its artifact location is this
    working directory's, as MLflow would have made it). Where no cache folder can be written,
    MLflow builds the tables itself, as before. The new store is in WAL mode either way
    (:func:`create_sqlite_in_wal_mode`)."""
    path = sqlite_path(uri)
    if path is None or "?" in uri or path.name in ("", ":memory:") or path.exists() or not path.parent.is_dir():
        return False
    template = _empty_store()
    if template is None:
        return create_sqlite_in_wal_mode(uri)
    import sqlite3

    partial = path.with_name(f".{path.name}.new-{os.getpid()}")
    try:
        with contextlib.closing(sqlite3.connect(template)) as source, contextlib.closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=WAL")
        os.link(partial, path)  # never over a store another process made meanwhile
    except FileExistsError:
        return False
    except (OSError, sqlite3.Error):
        return create_sqlite_in_wal_mode(uri)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return True


def _empty_store() -> Path | None:
    """An MLflow sqlite store with its tables and nothing else, made by MLflow once per MLflow and
    SQLAlchemy version in ``$XDG_CACHE_HOME/sweep`` (``~/.cache/sweep``); None where that folder
    cannot be written."""
    import sqlite3

    import mlflow
    import sqlalchemy

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sweep"
    template = folder / f"empty-mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}.db"
    if template.is_file():
        return template
    building = folder / f".{template.name}.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments()  # MLflow runs its migrations
        ready = building.with_suffix(".ready")
        with contextlib.closing(sqlite3.connect(building)) as made, contextlib.closing(sqlite3.connect(ready)) as copy:
            made.backup(copy)
            copy.execute("DELETE FROM experiments")  # MLflow adds its Default experiment where the store is opened
            copy.commit()
        os.replace(ready, template)
    except Exception:  # noqa: BLE001 - a read-only home, a full disk: MLflow builds each store itself
        return None
    finally:
        for leftover in (building, building.with_suffix(".ready"), Path(f"{building}-wal"), Path(f"{building}-shm")):
            with contextlib.suppress(OSError):
                leftover.unlink()
        forget_deleted_stores()  # MLflow's engine on the deleted build file
    return template


def create_sqlite_in_wal_mode(uri: str) -> bool:
    """Create a sqlite store that does not exist yet in write-ahead-log mode; True if it did.

    With WAL a commit appends to a log instead of rewriting pages through a rollback
    journal: the writer's operations for a short trial (create run, log_batch, terminate)
    took 7.4 instead of 8.9 ms of CPU and 7.8 instead of 10.7 ms of wall time here, and the
    MLflow UI or ``sweep status`` reading the file never blocks the writer (nor it them).
    Durability is unchanged (``synchronous`` stays at sqlite's default). WAL needs every
    process on one host, as the embedded store already does; the mode is stored in the file,
    so a database someone else made is left in the mode they chose.
    """
    path = sqlite_path(uri)
    if path is None or "?" in uri or path.name in ("", ":memory:") or path.exists() or not path.parent.is_dir():
        return False
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"


def check_writable(uri: str) -> None:
    """A sqlite store a sweep must write: its file (or, for a new store, its folder) writable,
    and its folder too (sqlite writes a journal beside the file). A read-only one failed at
    the sweep's first write, after 67 lines of MLflow's errors and two tracebacks. Raises
    PermissionError with the reason; other stores answer for themselves."""
    path = sqlite_path(uri)
    if path is None or str(path) == ":memory:":
        return
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK) or not os.access(path.parent, os.W_OK):
        what = "the file" if target == path and not os.access(path, os.W_OK) else f"its folder {path.parent}"
        raise PermissionError(f"{what} cannot be written (read-only, or not yours): the read-only commands (sweep best, status, report) still read it")


# the database stores MLflow opens through SQLAlchemy, beside sqlite (which Python ships)
_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


TRACKING_SCHEMES = ("sqlite", "http", "https", "databricks", "uc", *_DATABASE_SCHEMES)


def _scheme(uri: str) -> str:
    """``postgresql`` of ``postgresql+psycopg://...``: the URI's scheme, its driver left off."""
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


def _check_scheme(uri: str) -> None:
    """A tracking URI MLflow can open, said before anything tries: ``htp://`` was found only after
    the preflight, in MLflow's words cut mid-word; ``sqlite://`` (in memory) gave each of the
    sweep's processes its own empty database, and the sweep hung at its end. Raises ConnectionError."""
    import difflib

    if "://" not in uri or uri.startswith("file:"):
        return  # a path, or the file store: said below, with the sqlite:/// it likely meant
    scheme = _scheme(uri)
    if scheme not in TRACKING_SCHEMES:
        close = difflib.get_close_matches(scheme, TRACKING_SCHEMES, n=1, cutoff=0.5)
        raise ConnectionError(f"the scheme {scheme!r} is not a tracking store MLflow opens (expected {', '.join(TRACKING_SCHEMES)})"
                              + (f"; did you mean {close[0]!r}?" if close else ""))
    path = sqlite_path("sqlite:" + uri[7:]) if scheme == "sqlite" else None  # SQLITE:/// spelled so too
    if scheme == "sqlite" and (path is None or str(path) in ("", ":memory:")):
        raise ConnectionError("an in-memory sqlite database is not shared by the sweep's processes (driver, writer): "
                              "give a file, sqlite:///PATH (e.g. sqlite:///mlflow.db)")
    if scheme in ("http", "https"):
        import urllib.parse

        try:
            urllib.parse.urlsplit(uri)
        except ValueError as exc:  # "Invalid IPv6 URL": an unclosed [
            raise ConnectionError(f"expected a URL with a host, but it cannot be read: {exc}") from None


def _check_sqlite_is_mlflows(path: Path) -> None:
    """An existing sqlite file is MLflow's store (or empty, for a new one), read without writing:
    MLflow created its tables in another application's database, and a file that is no database
    made every command fail "unexpectedly" (`sweep ui`: 68 lines of traceback). Raises ConnectionError."""
    import sqlite3

    if path.stat().st_size == 0:
        return  # a new store's file (MLflow fills it)
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        if "not a database" not in str(exc):  # locked, or a WAL store in a read-only folder: MLflow reads it its own way
            return
        raise ConnectionError(f"{path} is not a sqlite database ({exc}): give the store's file, or a new file name") from None
    if tables and "experiments" not in tables:
        shown = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise ConnectionError(f"{path} is another application's sqlite database (tables {shown}), not an MLflow store: give a file of its own")


def _check_database_driver(uri: str) -> None:
    """A database store (``postgresql://``, ``mysql+pymysql://``) whose Python driver is not
    installed: one line naming the package, where MLflow's ModuleNotFoundError was a traceback.
    Raises ConnectionError. SQLAlchemy's ``create_engine`` imports the driver and connects to nothing."""
    if not _scheme(uri) in _DATABASE_SCHEMES:
        return
    import sqlalchemy

    try:
        sqlalchemy.create_engine(uri).dispose()
    except ModuleNotFoundError as exc:
        raise ConnectionError(f"this store needs the Python package that provides {exc.name!r} (e.g. pip install {exc.name})") from None
    except Exception as exc:  # noqa: BLE001 - a URI SQLAlchemy cannot read: said in one line, secrets masked
        raise ConnectionError(f"SQLAlchemy cannot open it: {redact_text(str(exc).splitlines()[0])}") from None


def _check_databricks_configured(uri: str) -> None:
    """``databricks`` (or ``databricks://PROFILE``) needs a workspace and credentials: from
    ``DATABRICKS_HOST`` (with a token or OAuth settings) or a profile in ``~/.databrickscfg``.
    Without them MLflow printed two warnings, and the command failed "unexpectedly" with a line
    cut at its first sentence."""
    profile = uri.partition("://")[2].split(":", 1)[0] or os.environ.get("DATABRICKS_CONFIG_PROFILE") or "DEFAULT"
    if os.environ.get("DATABRICKS_HOST"):
        return
    config = Path(os.environ.get("DATABRICKS_CONFIG_FILE") or Path.home() / ".databrickscfg")
    import configparser

    parser = configparser.ConfigParser()
    with contextlib.suppress(OSError, configparser.Error):
        parser.read(config)
    if parser.has_section(profile) or (profile == "DEFAULT" and parser.defaults()):
        return
    raise ConnectionError(
        f"Databricks is not configured for {uri!r}: set DATABRICKS_HOST and DATABRICKS_TOKEN, "
        f"or add the profile [{profile}] to {config} (databricks://PROFILE picks one)"
    )


def _answers_mlflows_api(health: Any, parts: Any, timeout: float) -> bool:
    """Whether MLflow's REST API answers under the URI's path: a JSON body (an experiment, or
    MLflow's own error) and not a web server's 404 page ("sweep list" failed "unexpectedly"
    with an HTML page as its reason for a URI with a wrong path prefix)."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    url = urllib.parse.urlunsplit((parts.scheme, urllib.parse.urlsplit(health.full_url).netloc, f"{parts.path.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name",
                                   "experiment_name=Default", ""))
    request = urllib.request.Request(url, headers=dict(health.header_items()))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read(4096)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return True  # it asks for credentials: a server is there
        body = exc.read(4096) if exc.fp is not None else b""
    except (OSError, ValueError):
        return True  # it answered /health a moment ago: say nothing new here
    try:
        return isinstance(json.loads(body or b"null"), dict)
    except ValueError:
        return False


def sqlite_hint(value: str) -> str | None:
    """The sqlite URI a bare path most likely meant (``mlflow.db`` -> ``sqlite:///mlflow.db``, a
    folder -> its ``mlflow.db``); None for a value with a URI scheme."""
    if value.startswith("file:"):
        value = value[len("file://") :] if value.startswith("file://") else value[len("file:") :]
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value) and not re.match(r"^[A-Za-z]:[\\/]", value):
        return None
    path = Path(value).expanduser()
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{path.as_posix()}"
    return f"sqlite:///{(path / 'mlflow.db').as_posix()}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of HTTP retries, when a tracking server is down;
    at once for a store MLflow cannot open: a sqlite URI naming a folder (MLflow retried its
    engine for about 100 s) and a file store (``./mlruns``, ``file://``: in maintenance mode in
    MLflow 3, its long notice was the error). Raises ConnectionError with the reason."""
    _check_scheme(uri)
    path = sqlite_path(uri)
    if path is not None and (str(path) in ("", ".", "/") or path.is_dir()):
        raise ConnectionError(f"{path} is a folder, not a sqlite database file (e.g. sqlite:///{Path(path) / 'mlflow.db'})")
    if path is not None and str(path) != ":memory:" and not path.parent.is_dir():  # a mistyped folder: MLflow made every missing one
        raise ConnectionError(f"the folder {path.parent} does not exist (create it first, or fix the path)")
    if path is not None and path.is_file():
        _check_sqlite_is_mlflows(path)
    if uri.startswith("file:") or "://" not in uri and not uri.startswith(("sqlite:", "databricks", "uc:")):
        hint = sqlite_hint(uri)
        raise ConnectionError("MLflow's file store (a folder such as ./mlruns) is not supported: use sqlite:///FILE (the default, ./mlflow.db) or http(s)://HOST:PORT"
                              + (f"; did you mean {hint!r}?" if hint else ""))
    if uri.startswith("databricks"):
        _check_databricks_configured(uri)
        return
    if not uri.startswith(("http://", "https://")):
        _check_database_driver(uri)
        return
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    # credentials as MLflow's client sends them: user:password@ in the URI (requests sends it as
    # basic auth), else MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN; never in the URL
    parts = urllib.parse.urlsplit(uri)
    user = urllib.parse.unquote(parts.username) if parts.username else os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = urllib.parse.unquote(parts.password or "") if parts.username else os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise ConnectionError(f"expected a port number after {host}:, got {parts.netloc.rpartition(':')[2]!r}") from None
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    request = urllib.request.Request(urllib.parse.urlunsplit((parts.scheme, netloc, f"{parts.path.rstrip('/')}/health", "", "")))
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and not _answers_mlflows_api(request, parts, timeout):  # a web server, but no MLflow at this path
            raise ConnectionError(f"{redact(uri)} answers HTTP, but no MLflow tracking server is at that path (HTTP 404 on its REST API): check the URL's path") from None
        return  # it answered: reachable (some proxies do not serve /health)
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"no answer from {redact(uri)} within {timeout:.0f} s ({getattr(exc, 'reason', exc)})") from None
