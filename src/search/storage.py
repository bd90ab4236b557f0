"""The Optuna storage of the search presets: an RDB storage whose running trials send heartbeats.

Hydra's Optuna sweeper asks for trials and tells their values itself (no `study.optimize`), so Optuna's own
heartbeat thread never runs. This storage starts one per trial it creates (Optuna's `get_heartbeat_thread`) and
stops it when the trial is told; before creating a trial it fails the study's stale ones (as Optuna's
`fail_stale_trials`). So when a worker process dies (`kill -9`, a lost node), its running trial is marked FAIL by
the next worker that asks for a trial after `grace_period` seconds, and the study stays usable.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from typing import Any

from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from src.patching import Guard

log = logging.getLogger(__name__)
# Optuna warns on every ask (inside Hydra's sweeper loop) that heartbeats are meant for Study.optimize; this storage
# sends them itself. Only that message, from Optuna's study module.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize",
                        category=UserWarning, module="optuna")
# It overrides Optuna's private `_create_new_trial` (what the study cache calls on every ask) and uses
# `_get_stale_trial_ids` and `optuna.storages._heartbeat.HeartbeatThread`.
GUARD = Guard("optuna_storage", "optuna", ("5.1.0",),
              "a plain RDB storage: the trial of a worker that dies stays RUNNING instead of being marked failed")


class HeartbeatStorage(RDBStorage):
    def __init__(self, url: str, heartbeat_interval: int, grace_period: int, **kwargs: Any) -> None:
        with warnings.catch_warnings():  # the argument is experimental in Optuna; we rely on it knowingly
            warnings.filterwarnings("ignore", message="Argument ``heartbeat_interval`` is an experimental",
                                    category=ExperimentalWarning)
            super().__init__(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, **kwargs)
        self._beats: dict[int, Any] = {}

    def __repr__(self) -> str:  # Hydra's Optuna sweeper logs "Storage: <...>": the URL, never a password
        from sqlalchemy.engine import make_url

        try:
            return f"{type(self).__name__}({make_url(self.url).render_as_string(hide_password=True)})"
        except Exception:  # noqa: BLE001  (an URL this cannot parse: the class name alone)
            return type(self).__name__

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_beats", None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._beats = {}

    def _create_new_trial(self, study_id: int, template_trial: Any = None) -> Any:
        # Optuna's study cache calls this (not create_new_trial) for every study.ask().
        self.fail_stale_trials(study_id)
        frozen = super()._create_new_trial(study_id, template_trial)
        if template_trial is None:  # a running trial (study.ask); enqueued (waiting) or finished ones: none yet
            self._start_beat(frozen._trial_id)
        return frozen

    def fail_stale_trials(self, study_id: int) -> None:
        """Optuna's `fail_stale_trials` without a Study: FAIL the running trials whose heartbeat stopped."""
        for trial_id in self._get_stale_trial_ids(study_id):
            try:
                if super().set_trial_state_values(trial_id, TrialState.FAIL):
                    log.warning("trial %d: no heartbeat for %s s (its worker died); marked failed",
                                self.get_trial_number_from_id(trial_id), self.grace_period)
            except UpdateFinishedTrialError:  # another worker failed it first
                pass

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        try:
            changed = super().set_trial_state_values(trial_id, state, values)
        finally:
            if state.is_finished() and trial_id in self._beats:
                self._beats.pop(trial_id).join()
        if changed and state == TrialState.RUNNING and trial_id not in self._beats:  # an enqueued trial taken
            self._start_beat(trial_id)
        return changed

    def _start_beat(self, trial_id: int) -> None:
        beat = _daemon_beat(trial_id, self)
        beat.start()
        self._beats[trial_id] = beat

    def fail_running(self) -> None:
        """FAIL this process's running trials and stop their heartbeats: the sweep ended without telling them (a
        launcher's error), and the next worker should not wait out the grace period to know."""
        for trial_id in list(self._beats):
            try:
                self.set_trial_state_values(trial_id, TrialState.FAIL)  # (stops its beat, whatever it raises)
            except UpdateFinishedTrialError:  # told meanwhile (another worker failed it as stale)
                pass
            except Exception as e:  # noqa: BLE001  (cleanup on the way out: the launcher's error is the one to show)
                log.warning("trial %d could not be marked failed (%s: %s); another worker fails it once its "
                            "heartbeat is %s s old", trial_id, type(e).__name__, e, self.grace_period)
            beat = self._beats.pop(trial_id, None)
            if beat is not None:
                beat.join()


def _daemon_beat(trial_id: int, storage: HeartbeatStorage) -> Any:
    """Optuna's heartbeat thread as a daemon: a sweep that raises before telling a trial must not hang the process
    at exit waiting for the beat of a trial nobody will tell (Optuna's is a plain thread, which its
    `study.optimize` always joins)."""
    return _daemon_beat_class()(trial_id, storage)


@functools.cache
def _daemon_beat_class() -> type:
    """The class, made once (on first use: Optuna's private module is imported only where `GUARD` allows it)."""
    import threading

    from optuna.storages._heartbeat import HeartbeatThread

    class DaemonBeat(HeartbeatThread):
        def start(self) -> None:
            self._stop_event = threading.Event()
            self._thread = threading.Thread(target=self._record_heartbeat, daemon=True,
                                            args=(self._trial_id, self._heartbeat, self._stop_event))
            self._thread.start()

    return DaemonBeat


def open_storage(url: str, heartbeat_interval: int, grace_period: int, attempts: int = 5) -> RDBStorage:
    """Open (and on first use create) the study database: a `HeartbeatStorage`, or Optuna's own RDB storage where
    `GUARD` turns the heartbeats off.

    Workers started together on a fresh database race to create Optuna's schema: the loser's CREATE fails
    (PostgreSQL: `type "studydirection" already exists`). The schema is there by then, so opening again works.
    """
    for attempt in range(1, attempts + 1):
        try:
            engine = {"pool_pre_ping": True} if not url.startswith("sqlite") else None
            if GUARD.allowed():
                return HeartbeatStorage(url, heartbeat_interval, grace_period, engine_kwargs=engine)
            return RDBStorage(url, engine_kwargs=engine)
        except (IntegrityError, ProgrammingError, OperationalError) as e:
            if attempt == attempts:
                raise
            log.info("study storage: creating the schema raced another worker (%s); retrying", type(e).__name__)
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")
