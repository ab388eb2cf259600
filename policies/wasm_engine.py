"""The compiled engine: the policies built by OPA into WebAssembly (`opa build -t wasm`),
evaluated in-process by wasmtime (the Bytecode Alliance's runtime, from PyPI).

OPA's Wasm ABI (version 1.2 and later) evaluates a decision in one call: the input is written
as JSON text into the module's memory above the data document, and
`opa_eval(0, entrypoint, data, input, input_len, heap, 0)` returns the address of the result
set as JSON text. The data documents (agreements, roles, ... and the derived indexes) are
parsed into the module once per instance (`set_data`); each evaluation then starts from the
heap mark left after the data, so nothing of one decision survives into the next.

Why this runtime and this driver: measured in bench/bench_policy.py against opa-py-wasm (the
maintained OPA SDK on wasmtime), which makes five calls into the module per decision; this
makes one. wasmtime-py's public `Func.__call__` looks up and converts the types of every
argument on every call (about 100 us for opa_eval's seven, three times the evaluation
itself), so the call goes through the C API's `wasmtime_func_call_unchecked`, the documented
fast path for a signature checked in advance: opa_eval's is checked when the instance is made.
If the installed wasmtime-py does not expose it, the public call is used.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import threading
from typing import Any

from policies.bundle import DECISION_PATH, PolicyBundle
from policies.compiled import CompiledPolicy, load_compiled
from policies.engine import PolicyEngine, PolicyError

_PAGE = 65536


class WasmInstance:
    """One instance of the compiled policy with the data loaded: one decision at a time."""

    def __init__(self, compiled: CompiledPolicy, module: Any, engine: Any, data_json: bytes):
        import wasmtime

        self._store = wasmtime.Store(engine)
        store = self._store
        memory_type = next(i.type for i in module.imports if i.name == "memory")
        self._memory = wasmtime.Memory(store, memory_type)
        abort_type = wasmtime.FuncType([wasmtime.ValType.i32()], [])

        def abort(addr: int) -> None:
            raise PolicyError(f"the compiled policy aborted: {self._cstring(addr)!r}")

        def println(addr: int) -> None:  # print() in a policy; ignored like OPA's server does
            return None

        def builtin(*args: int) -> int:
            # The module names the built-ins the host must supply; the policies use none, and
            # an instance of a module that needs any is refused above.
            raise PolicyError("the compiled policy called a host built-in")

        imports = []
        for imp in module.imports:
            if imp.name == "memory":
                imports.append(self._memory)
            elif imp.name == "opa_abort":
                imports.append(wasmtime.Func(store, abort_type, abort))
            elif imp.name == "opa_println":
                imports.append(wasmtime.Func(store, abort_type, println))
            elif imp.name.startswith("opa_builtin"):
                imports.append(wasmtime.Func(store, imp.type, builtin))
            else:
                raise PolicyError(f"the compiled policy imports an unknown function {imp.name!r}")
        instance = wasmtime.Instance(store, module, imports)
        exports = instance.exports(store)
        self._malloc = exports["opa_malloc"]
        self._json_parse = exports["opa_json_parse"]
        self._heap_get = exports["opa_heap_ptr_get"]
        self._eval = exports["opa_eval"]
        self._dump = exports["opa_json_dump"]
        entrypoints = self._value(exports["entrypoints"](store))
        builtins = self._value(exports["builtins"](store))
        if builtins:  # the host would have to implement them; none of our policies needs one
            raise PolicyError(f"the compiled policy needs host built-ins {sorted(builtins)}")
        if DECISION_PATH not in entrypoints:
            raise PolicyError(f"the compiled policy has no entrypoint {DECISION_PATH}")
        self._entrypoint = entrypoints[DECISION_PATH]
        self._data_addr = self._parse(data_json)
        # Everything above this mark belongs to one evaluation and is reused by the next.
        self._heap_mark = self._heap_get(store)
        self._fast_call = _unchecked_call(store, self._eval)

    def _cstring(self, addr: int) -> bytes:
        base = ctypes.addressof(self._memory.data_ptr(self._store).contents)
        return ctypes.string_at(base + addr)

    def _value(self, addr: int) -> Any:
        """A value inside the module, as Python (through its JSON text)."""
        return json.loads(self._cstring(self._dump(self._store, addr)))

    def _parse(self, raw: bytes) -> int:
        addr = self._malloc(self._store, len(raw))
        self._memory.write(self._store, raw, addr)
        value = self._json_parse(self._store, addr, len(raw))
        if not value:
            raise PolicyError("the compiled policy could not parse the data documents")
        return value

    def evaluate(self, raw_input: bytes) -> Any:
        store, memory = self._store, self._memory
        input_addr = self._heap_mark
        need = input_addr + len(raw_input) + _PAGE
        size = memory.data_len(store)
        if need > size:
            memory.grow(store, (need - size) // _PAGE + 1)
        base = ctypes.addressof(memory.data_ptr(store).contents)
        ctypes.memmove(base + input_addr, raw_input, len(raw_input))
        args = (0, self._entrypoint, self._data_addr, input_addr, len(raw_input),
                input_addr + len(raw_input), 0)
        result = self._fast_call(args) if self._fast_call else self._eval(store, *args)
        # The memory may have grown (and moved) during the evaluation.
        text = ctypes.string_at(ctypes.addressof(memory.data_ptr(store).contents) + result)
        results = json.loads(text)
        if not results:
            return None  # undefined
        return results[0].get("result")


def _unchecked_call(store: Any, func: Any) -> Any:
    """A caller of `func` (7 i32 arguments, 1 i32 result) through
    wasmtime_func_call_unchecked, or None if this wasmtime-py does not expose it."""
    import wasmtime

    try:
        from wasmtime import _bindings as ffi

        raw_array = ffi.wasmtime_val_raw_t * 7
        call, trap_type = ffi.wasmtime_func_call_unchecked, ffi.wasm_trap_t
        context, func_ref = store._context(), ctypes.byref(func._func)
    except (ImportError, AttributeError):
        return None
    kind = func.type(store)
    i32 = wasmtime.ValType.i32()
    if list(kind.params) != [i32] * 7 or list(kind.results) != [i32]:
        raise PolicyError("the compiled policy's opa_eval does not have the ABI's signature")
    values = raw_array()

    def unchecked(args: tuple[int, ...]) -> int:
        for i, arg in enumerate(args):
            values[i].i32 = arg
        trap = ctypes.POINTER(trap_type)()
        error = call(context, func_ref, values, 7, ctypes.byref(trap))
        if error:
            raise PolicyError(f"the compiled policy failed: {wasmtime.WasmtimeError._from_ptr(error)}")
        if trap:
            raise PolicyError(f"the compiled policy trapped: {wasmtime.Trap._from_ptr(trap)}")
        return values[0].i32

    return unchecked


class WasmEngine(PolicyEngine):
    """OPA-compiled policies in wasmtime. Like EmbeddedEngine, concurrent callers each borrow
    an instance (made on first need, up to `workers`, default one per CPU); wasmtime runs
    without the GIL, so decisions in different threads use different cores."""

    def __init__(self, bundle: PolicyBundle, compiled: CompiledPolicy | None = None,
                 workers: int | None = None):
        import wasmtime

        self.policy_bundle = bundle
        self.bundle_revision = bundle.revision
        self.compiled = compiled or load_compiled(bundle)
        self._engine = wasmtime.Engine()
        self._module = wasmtime.Module(self._engine, self.compiled.wasm)
        self._data_json = json.dumps(bundle.data, separators=(",", ":")).encode()
        self._max = max(1, workers or os.cpu_count() or 1)
        self._idle: queue.LifoQueue[WasmInstance] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._made = 1
        self._idle.put(self._new_instance())

    def _new_instance(self) -> WasmInstance:
        return WasmInstance(self.compiled, self._module, self._engine, self._data_json)

    def _take(self) -> WasmInstance:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._made < self._max
            if grow:
                self._made += 1
        return self._new_instance() if grow else self._idle.get()

    def _evaluate(self, prepared: dict[str, Any]) -> Any:
        try:
            raw = json.dumps(prepared, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"the policy input is not JSON: {exc}") from exc
        instance = self._take()
        try:
            return instance.evaluate(raw)
        except Exception as exc:
            # A module that trapped mid-evaluation is not trusted again: a fresh instance
            # takes its place in the pool.
            instance = self._new_instance()
            if isinstance(exc, PolicyError):
                raise
            raise PolicyError(f"the compiled policy failed: {exc}") from exc
        finally:
            self._idle.put(instance)

