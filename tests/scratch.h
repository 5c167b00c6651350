/* A scratch directory for the tests that write files: tmpdir, made by
 * scratch_make and removed with everything in it by scratch_remove.  The
 * including file defines _DEFAULT_SOURCE first (for mkdtemp). */
#ifndef LSR_TEST_SCRATCH_H
#define LSR_TEST_SCRATCH_H

#include <stdio.h>
#include <stdlib.h>

static char tmpdir[] = "/tmp/lsr-test-XXXXXX";

static inline int scratch_make(void) { return mkdtemp(tmpdir) ? 0 : -1; }

static inline void scratch_remove(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

#endif
