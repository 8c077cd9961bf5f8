from .http cimport HttpClient, Slots

cdef class RowBuffer:
    cdef public object sink
    cdef public Py_ssize_t limit, n, flushed
    cdef public bytearray buf
    cdef public list args, errors

cdef class Engine:
    cdef public object trace_path, speed, keep, dialect, shared, bind_sink, bound_ids, _slot, _failure
    cdef public object target, client_kind, client, replay_client, _reader, _stream, _gc_threshold, _send_errors
    cdef public Py_ssize_t concurrency, bind_chunk, bound, errors, in_flight
    cdef public double timeout, t0
    cdef public RowBuffer rows
    cdef public dict bindings, new_bindings, _bind_buf, _scen, _routes, _id_readers
    cdef public set _sleepers, _tasks
    cdef public bint stopping
    cdef public HttpClient http
    cdef public Slots slots
