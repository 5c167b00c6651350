/* An LD_PRELOAD shim for tests/test_cli.sh.  lsr's own calls of memcpy on
 * overlapping buffers exit 97 (undefined behaviour that neither ASan nor
 * valgrind reports when dst == src); with SHIM_FAIL_REALLOC set, lsr's own
 * realloc calls fail as out of memory.  Calls from libraries pass through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

/* 1 if the return address ret lies in the executable (not in a library) */
static int from_lsr(void *ret) {
    Dl_info exe, at;
    return dladdr((void *)getauxval(AT_PHDR), &exe) && dladdr(ret, &at) &&
           at.dli_fbase == exe.dli_fbase;
}

/* no restrict, and built with -fno-builtin: else memmove becomes memcpy */
void *memcpy(void *d, const void *s, size_t n) {
    if (n && (char *)d < (const char *)s + n && (const char *)s < (char *)d + n &&
        from_lsr(__builtin_return_address(0))) {
        static const char msg[] = "shim: lsr called memcpy on overlapping buffers\n";
        if (write(2, msg, sizeof msg - 1) < 0) _exit(98);
        _exit(97);
    }
    return memmove(d, s, n);
}

void *realloc(void *p, size_t n) {
    static void *(*real)(void *, size_t);
    if (getenv("SHIM_FAIL_REALLOC") && from_lsr(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    if (!real) real = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    return real(p, n);
}
