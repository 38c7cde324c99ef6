# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Fast reader for the box lines of a WIDER FACE prediction file.

The public evaluator reads each line with ``line.rstrip('\\r\\n').split(' ')``, skips it when
the first field is empty and converts the first five fields with ``float``. This reader does
the same in C, in one pass over the bytes. It gives up (returns None) on anything it cannot
vouch for: a carriage return, a non-ASCII byte, a short line, or a field that is not a plain
decimal number; the caller then reads that file the slow, exact way, which also names the bad
line. Every value it returns is the one ``float`` gives: decimals of at most 15 digits
without exponent are one correctly rounded division (Clinger's exact case), the rest go
through ``PyOS_string_to_double``, the routine behind ``float``.
"""
import numpy as np

from cpython.conversion cimport PyOS_string_to_double

cdef enum:
    NEWLINE = 10
    CARRIAGE_RETURN = 13
    SPACE = 32
    PLUS = 43
    MINUS = 45
    DOT = 46
    ZERO = 48
    NINE = 57
    UPPER_E = 69
    LOWER_E = 101
    MAX_FIELD = 63
    MAX_EXACT_DIGITS = 15

cdef double POWERS_OF_TEN[MAX_EXACT_DIGITS + 1]
POWERS_OF_TEN[:] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15]


cdef inline bint _is_digit(unsigned char c) noexcept:
    return ZERO <= c <= NINE


cdef bint _parse_plain_decimal(const unsigned char *start, const unsigned char *end, double *value) noexcept:
    """``[+-]digits[.digits]`` with 1 to 15 digits, exactly as ``float`` rounds it."""
    cdef const unsigned char *p = start
    cdef bint negative = False
    cdef long long mantissa = 0
    cdef int digits = 0, fraction_digits = 0
    cdef bint in_fraction = False
    if p[0] == MINUS or p[0] == PLUS:
        negative = p[0] == MINUS
        p += 1
    while p < end:
        if _is_digit(p[0]):
            mantissa = mantissa * 10 + (p[0] - ZERO)
            digits += 1
            fraction_digits += in_fraction
            if digits > MAX_EXACT_DIGITS:
                return False
        elif p[0] == DOT and not in_fraction:
            in_fraction = True
        else:
            return False
        p += 1
    if digits == 0:
        return False
    value[0] = <double>mantissa / POWERS_OF_TEN[fraction_digits]
    if negative:
        value[0] = -value[0]
    return True


cdef bint _parse_field(const unsigned char *start, const unsigned char *end, double *value):
    """``float(field)`` into ``value``; False where the field is not a plain decimal."""
    cdef char buffer[MAX_FIELD + 1]
    cdef Py_ssize_t length = end - start, i
    cdef unsigned char c
    if length == 0 or length > MAX_FIELD:
        return False
    if _parse_plain_decimal(start, end, value):
        return True
    for i in range(length):
        c = start[i]
        if not (_is_digit(c) or c == DOT or c == PLUS or c == MINUS or c == UPPER_E or c == LOWER_E):
            return False
        buffer[i] = <char>c
    buffer[length] = 0
    try:
        value[0] = PyOS_string_to_double(buffer, NULL, NULL)
    except ValueError:
        return False
    return True


def parse_box_lines(const unsigned char[::1] text):
    """The (n, 5) float64 rows ``x y w h score`` of ``text``, or None to ask for the exact reader.

    ``text`` is the file content after the count line.
    """
    cdef Py_ssize_t size = text.shape[0], rows = 0, max_rows = 1, i, field
    cdef const unsigned char *data
    cdef const unsigned char *end
    cdef const unsigned char *line
    cdef const unsigned char *line_end
    cdef const unsigned char *start
    cdef const unsigned char *stop
    if size == 0:
        return np.empty((0, 5), dtype=np.float64)
    data = &text[0]
    end = data + size
    for i in range(size):
        max_rows += data[i] == NEWLINE
    boxes = np.empty((max_rows, 5), dtype=np.float64)
    cdef double[:, ::1] values = boxes
    line = data
    while line < end:
        line_end = line
        while line_end < end and line_end[0] != NEWLINE:
            if line_end[0] == CARRIAGE_RETURN or line_end[0] >= 128:
                return None
            line_end += 1
        if line_end > line and line[0] != SPACE:
            start = line
            for field in range(5):
                stop = start
                while stop < line_end and stop[0] != SPACE:
                    stop += 1
                if not _parse_field(start, stop, &values[rows, field]):
                    return None
                if field < 4:
                    if stop == line_end:
                        return None
                    start = stop + 1
            rows += 1
        line = line_end + 1
    return boxes[:rows]
