"""Runs "auto" and "multi" artifacts (compiler/targets/auto.py): the model built for several targets.

AUTO loads the first listed build this machine can run (a gpu build needs an OpenCL device). When
that is a gpu build and the artifact has a cpu build too, requests run on the cpu build while the
gpu program builds in the background, then switch: the first inference does not wait for the
OpenCL compiler. MULTI loads every build it can run and gives each call to an idle one. The
choices are logged (logger `kiln.runtime.auto`).
"""

from __future__ import annotations

import logging
import threading

from runtime.artifact_reader import ArtifactError

log = logging.getLogger("kiln.runtime.auto")


def _present(target: str) -> bool:
    """Whether this machine can run builds for `target` (a gpu build needs an OpenCL device)."""
    if target != "gpu":
        return True
    from runtime.devices import opencl_device_list

    return bool(opencl_device_list())


class _Builds:
    """The builds of an auto/multi artifact this machine can run, in priority order."""

    def __init__(self, files, options: dict):
        from runtime.model import executor_for  # model.py imports the executors by name; no cycle at import

        self._executor_for, self._options = executor_for, options
        parts = [(part["target"], files.part(part["prefix"])) for part in files.manifest["parts"]]
        self.present = [(target, part) for target, part in parts if _present(target)]
        if not self.present:
            raise ArtifactError(f"none of this artifact's targets ({', '.join(t for t, _ in parts)}) can run here: "
                                "no OpenCL device was found")
        self.threads = options.get("cpu", {}).get("num_threads") or 1
        self.loaded: list = []

    def load(self, part):
        executor = self._executor_for(part, self._options)
        self.loaded.append(executor)
        return executor

    def close(self) -> None:
        for executor in self.loaded:
            close = getattr(executor, "close", None)
            if close is not None:
                close()


class AutoExecutor(_Builds):
    def __init__(self, files, **options):
        super().__init__(files, options)
        self.device, best = self.present[0]
        self.ready = threading.Event()
        cpu = next((part for target, part in self.present[1:] if target == "cpu"), None)
        if self.device == "gpu" and cpu is not None:
            self._current = self.load(cpu)
            log.info("AUTO: gpu chosen; requests run on the cpu build until the gpu program is built")
            threading.Thread(target=self._switch_to, args=(best,), name="kiln-auto-build", daemon=True).start()
        else:
            self._current = self.load(best)
            self.ready.set()
            log.info("AUTO: %s chosen", self.device)

    def _switch_to(self, part) -> None:
        try:
            self._current = self.load(part)
            log.info("AUTO: the gpu program is built; requests now run on the gpu build")
        except ArtifactError as error:
            self.device = "cpu"
            log.warning("AUTO: the gpu build did not load (%s); staying on the cpu build", error)
        finally:
            self.ready.set()

    def run(self, inputs: list) -> list:
        return self._current.run(inputs)


class MultiExecutor(_Builds):
    def __init__(self, files, **options):
        super().__init__(files, options)
        self.devices = [target for target, _ in self.present]
        self._executors = [self.load(part) for _, part in self.present]
        self._locks = [threading.Lock() for _ in self._executors]
        self.calls = [0] * len(self._executors)
        self._turn = 0
        log.info("MULTI: requests spread over %s", ", ".join(self.devices))

    def run(self, inputs: list) -> list:
        """On the first idle build (in turn), else wait for the next one in turn."""
        start, self._turn = self._turn, (self._turn + 1) % len(self._executors)
        order = [(start + k) % len(self._executors) for k in range(len(self._executors))]
        index = next((i for i in order if self._locks[i].acquire(blocking=False)), None)
        if index is None:
            index = start
            self._locks[index].acquire()
        try:
            self.calls[index] += 1
            return self._executors[index].run(inputs)
        finally:
            self._locks[index].release()
