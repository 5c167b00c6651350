#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void lsr_rng_seed(lsr_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lsr_rng_next(lsr_rng *rng) {
    uint64_t *s = rng->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double lsr_rng_uniform(lsr_rng *rng) { return (double)(lsr_rng_next(rng) >> 11) * 0x1.0p-53; }

double lsr_rng_normal(lsr_rng *rng) {
    const double u = 1.0 - lsr_rng_uniform(rng), v = lsr_rng_uniform(rng);
    return sqrt(-2.0 * log(u)) * cos(2.0 * 3.14159265358979323846 * v);
}

uint64_t lsr_rng_below(lsr_rng *rng, uint64_t n) {
    /* rejection keeps it unbiased */
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = lsr_rng_next(rng);
    while (x >= limit);
    return x % n;
}

void lsr_rng_shuffle(lsr_rng *rng, int64_t *v, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)lsr_rng_below(rng, (uint64_t)i + 1);
        int64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static void directory_of(const char *path, char *dir, size_t size) {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(dir, size, "%s", dirname(copy));
}

/* Removes path.tmp.PID.* files left by processes that no longer run (a
 * kill -9 during a write leaves its temporary file behind). */
static void remove_stale_temporaries(const char *path) {
    char dir[4096], copy[4096];
    directory_of(path, dir, sizeof dir);
    snprintf(copy, sizeof copy, "%s", path);
    const char *base = basename(copy);
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    const size_t plen = strlen(prefix);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, plen) != 0) continue;
        char *end;
        const long pid = strtol(e->d_name + plen, &end, 10);
        if (end == e->d_name + plen || *end != '.' || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char stale[8400];
        snprintf(stale, sizeof stale, "%s/%s", dir, e->d_name);
        unlink(stale);
    }
    closedir(d);
}

lsr_status lsr_atomic_open(lsr_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (strlen(path) + 32 >= sizeof af->path)
        return lsr__fail(LSR_ERROR_OPTION, "%s: path too long", path);
    remove_stale_temporaries(path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld.XXXXXX", path, (long)getpid());
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) return lsr__fail(LSR_ERROR_IO, "%s: cannot create: %s", path, strerror(errno));
    const mode_t mask = umask(0); /* mkstemp makes 0600; give the file the usual mode */
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        unlink(af->tmp_path);
        return lsr__fail(LSR_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    return 0;
}

lsr_status lsr_atomic_commit(lsr_atomic_file *af) {
    int failed = fflush(af->f) != 0 || ferror(af->f) || fsync(fileno(af->f)) != 0;
    int saved = errno;
    if (fclose(af->f) != 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    af->f = NULL;
    if (failed) {
        unlink(af->tmp_path);
        return lsr__fail(LSR_ERROR_IO, "%s: write failed: %s", af->path, strerror(saved));
    }
    if (rename(af->tmp_path, af->path) != 0) {
        saved = errno;
        unlink(af->tmp_path);
        return lsr__fail(LSR_ERROR_IO, "%s: cannot rename into place: %s", af->path,
                         strerror(saved));
    }
    char dir[4096];
    directory_of(af->path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

lsr_status lsr_check_writable(const char *path, const char *what) {
    char dir[4096];
    directory_of(path, dir, sizeof dir);
    if (access(dir, W_OK | X_OK) != 0)
        return lsr__fail(LSR_ERROR_IO, "%s %s: directory '%s' is not writable: %s", what, path, dir,
                         strerror(errno));
    return 0;
}

double lsr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

lsr_status lsr_parse_number_list(const char *s, const char *flag, double min, double max,
                                 double *out, int capacity, int *n) {
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !(v >= min && v <= max) || (*end && *end != ','))
            return lsr__fail(LSR_ERROR_OPTION,
                             "%s: '%s' is not a comma-separated list of numbers in [%g, %g]", flag,
                             s, min, max);
        if (*n == capacity)
            return lsr__fail(LSR_ERROR_OPTION, "%s: more than %d values", flag, capacity);
        out[(*n)++] = v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p)
            return lsr__fail(LSR_ERROR_OPTION, "%s: '%s' ends with a comma", flag, s);
    }
    if (*n == 0) return lsr__fail(LSR_ERROR_OPTION, "%s: empty list", flag);
    for (int i = 1; i < *n; i++) /* insertion sort */
        for (int k = i; k > 0 && out[k] < out[k - 1]; k--) {
            double t = out[k];
            out[k] = out[k - 1];
            out[k - 1] = t;
        }
    for (int i = 1; i < *n; i++)
        if (out[i] == out[i - 1])
            return lsr__fail(LSR_ERROR_OPTION, "%s: %g appears twice", flag, out[i]);
    return 0;
}
