cdef class Slots:
    cdef public Py_ssize_t limit, free, waited
    cdef public object waiters
    cdef public bint stopped

cdef class _Conn:
    cdef public object transport, parser, fut, body, on_body, expected, on_message_begin, pool, sent
    cdef public bytes head, out
    cdef public bint closed, keep_alive
    cdef public double deadline

cdef class HttpClient:
    cdef public double timeout, timer_at
    cdef public dict origins
    cdef public object _ssl, timer, timer_loop, loop
    cdef public Slots slots
    cdef public Py_ssize_t open, most_open
    cdef public set conns
    cdef public list queued

cdef class Origin:
    cdef public str host, prefix
    cdef public object port, ssl
    cdef public double timeout
    cdef public bytes _head_tail, _prefix_b
    cdef public dict _heads
    cdef public list idle
    cdef public Py_ssize_t opened
    cdef public HttpClient pool
    cdef public Slots slots
