/* The library's one error convention (lsr/loss.h): every fallible function
 * returns an lsr_status, after recording a one-line message naming the file,
 * setting or argument for lsr_last_error().  The record is per thread and
 * lives in validate.c; the loss and the trainer both use it.  Not installed. */
#ifndef LSR_ERROR_H
#define LSR_ERROR_H

#include "lsr/loss.h"

/* Records a printf-style message for lsr_last_error() and returns status; the
 * arguments may quote lsr_last_error() itself, to add context. */
lsr_status lsr__fail(lsr_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The status of this thread's last lsr__fail: what a function returns when
 * a call it made failed and it only passes the failure on after cleaning up. */
lsr_status lsr__failed(void);
void lsr__clear_error(void);

/* Returns the status of expr from the calling function if it is an error. */
#define LSR_TRY(expr)                                                                              \
    do {                                                                                           \
        const lsr_status lsr_try_status_ = (expr);                                                 \
        if (lsr_try_status_ != LSR_OK) return lsr_try_status_;                                     \
    } while (0)

#endif
