"""ModelWatcher in a running event loop, over real bundles on disk."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fraudguard.errors import BundleError
from scoring.model import ActiveModel, ModelWatcher, load_promoted, promote
from tests._model_helpers import make_bundle, train_booster, write_promoted

INTERVAL_S = 0.02
PATIENCE_S = 10.0  # generous: the box is shared, and loading a model takes a thread hop
BAD_SCHEMA = "0000000000000000"


@dataclass
class Received:
    """What the watcher handed over, and on which thread."""

    models: asyncio.Queue[ActiveModel] = field(default_factory=asyncio.Queue)
    threads: list[int] = field(default_factory=list)

    def __call__(self, model: ActiveModel) -> None:
        self.threads.append(threading.get_ident())
        self.models.put_nowait(model)

    async def next(self) -> ActiveModel:
        return await asyncio.wait_for(self.models.get(), PATIENCE_S)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    make_bundle(tmp_path, "v1")
    promote(tmp_path, "v1")
    return tmp_path


@pytest.fixture
async def watcher(models_dir: Path) -> AsyncIterator[ModelWatcher]:
    watcher = ModelWatcher(models_dir, INTERVAL_S)
    yield watcher
    await watcher.stop()


@pytest.fixture
def received() -> Received:
    return Received()


async def _until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(INTERVAL_S)

    await asyncio.wait_for(poll(), PATIENCE_S)


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "fraudguard.scoring" and r.levelno >= logging.ERROR]


async def test_a_promoted_bundle_is_handed_over_on_the_loop(models_dir: Path, watcher: ModelWatcher,
                                                            received: Received) -> None:
    current = load_promoted(models_dir)
    watcher.start(received, current_version=current.bundle.manifest.version)
    make_bundle(models_dir, "v2", booster=train_booster(seed=5))
    promote(models_dir, "v2")
    model = await received.next()
    assert model.bundle.manifest.version == "v2"
    assert watcher.current_version == "v2"
    assert received.threads == [threading.get_ident()]  # called on the loop, not in the loading thread
    assert model.runtime.predict(np.zeros((1, model.runtime.n_features), dtype=np.float32)).shape == (1,)


async def test_a_bad_bundle_is_logged_once_and_the_old_model_stays(models_dir: Path, watcher: ModelWatcher,
                                                                   received: Received,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fraudguard.scoring")
    watcher.start(received, current_version="v1")
    make_bundle(models_dir, "wrong-schema", schema_version=BAD_SCHEMA)
    write_promoted(models_dir, "wrong-schema\n")  # promote() would refuse it; another schema's trainer would not
    await _until(lambda: bool(_errors(caplog)))
    await asyncio.sleep(INTERVAL_S * 10)  # many more polls: the same bad version is not retried
    [error] = _errors(caplog)
    assert error.__dict__["promoted"] == "wrong-schema"
    assert error.__dict__["model_version"] == "v1"
    assert "feature schema" in error.__dict__["error"]
    assert received.models.empty()
    assert watcher.current_version == "v1"
    # A good promotion afterwards is picked up as usual.
    make_bundle(models_dir, "v3")
    promote(models_dir, "v3")
    assert (await received.next()).bundle.manifest.version == "v3"


async def test_a_bad_version_is_retried_once_promoted_again(models_dir: Path, watcher: ModelWatcher,
                                                            received: Received,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    watcher.start(received, current_version="v1")
    make_bundle(models_dir, "v2")
    (models_dir / "v2" / "trees.npz").rename(models_dir / "trees.npz.aside")
    write_promoted(models_dir, "v2\n")
    await _until(lambda: bool(_errors(caplog)))
    (models_dir / "trees.npz.aside").rename(models_dir / "v2" / "trees.npz")
    write_promoted(models_dir, "v1\n")  # PROMOTED changes (back) ...
    assert await watcher.reload_now() is None
    write_promoted(models_dir, "v2\n")  # ... so the repaired v2 is tried again
    assert (await received.next()).bundle.manifest.version == "v2"


async def test_reload_now(models_dir: Path, watcher: ModelWatcher, received: Received) -> None:
    slow = ModelWatcher(models_dir, interval_s=3600)
    slow.start(received, current_version="v1")
    try:
        assert await slow.reload_now() is None  # unchanged
        make_bundle(models_dir, "v2")
        promote(models_dir, "v2")
        model = await slow.reload_now()
        assert model is not None and model.bundle.manifest.version == "v2"
        assert (await received.next()) is model
        make_bundle(models_dir, "wrong-schema", schema_version=BAD_SCHEMA)
        write_promoted(models_dir, "wrong-schema")
        for _ in range(2):  # an explicit reload retries, and says why it failed
            with pytest.raises(BundleError, match="feature schema"):
                await slow.reload_now()
        assert slow.current_version == "v2"
    finally:
        await slow.stop()


async def test_garbage_in_promoted_is_logged_and_ignored(models_dir: Path, watcher: ModelWatcher,
                                                         received: Received,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    watcher.start(received, current_version="v1")
    write_promoted(models_dir, "../../etc/passwd")
    await _until(lambda: bool(_errors(caplog)))
    await asyncio.sleep(INTERVAL_S * 5)
    assert len(_errors(caplog)) == 1
    assert "bad bundle version" in _errors(caplog)[0].__dict__["error"]
    assert received.models.empty()


async def test_a_failing_callback_keeps_the_watcher_alive(models_dir: Path, watcher: ModelWatcher,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def refuse(model: ActiveModel) -> None:
        calls.append(model.bundle.manifest.version)
        raise RuntimeError("scorer refused the model")

    watcher.start(refuse, current_version="v1")
    make_bundle(models_dir, "v2")
    promote(models_dir, "v2")
    await _until(lambda: bool(_errors(caplog)))
    await asyncio.sleep(INTERVAL_S * 5)
    assert calls == ["v2"]
    assert watcher.current_version == "v1"
    assert _errors(caplog)[0].exc_info is not None


async def test_stop_ends_polling(models_dir: Path, received: Received) -> None:
    watcher = ModelWatcher(models_dir, INTERVAL_S)
    watcher.start(received, current_version="v1")
    with pytest.raises(RuntimeError, match="already running"):
        watcher.start(received, current_version="v1")
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "fraudguard-model-watcher"]
    assert len(tasks) == 1
    await watcher.stop()
    assert tasks[0].done()
    make_bundle(models_dir, "v2")
    promote(models_dir, "v2")
    await asyncio.sleep(INTERVAL_S * 5)
    assert received.models.empty()
    await watcher.stop()  # idempotent


def test_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        ModelWatcher(tmp_path, 0)
