/* Shared by the libFuzzer harnesses: the parsers read files, so each input
 * is written to a private temporary file first. */
#ifndef LSR_FUZZ_INPUT_H
#define LSR_FUZZ_INPUT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir[64];

/* Writes data to fuzz_dir/name and returns the path (static buffer). */
__attribute__((unused)) static const char *fuzz_file(const char *name, const uint8_t *data,
                                                     size_t size) {
    static char path[128];
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/lsr-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir)) abort();
    }
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    return path;
}

#endif
