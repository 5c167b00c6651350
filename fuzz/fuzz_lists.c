/* Sweep lists (--smoothing 0,0.05,0.1). */
#include "common/common.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char s[256];
    if (size >= sizeof s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    double v[8];
    int n;
    if (lsr_parse_number_list(s, "--smoothing", 0.0, 1.0, v, 8, &n) == LSR_OK)
        for (int i = 1; i < n; i++)
            if (!(v[i - 1] < v[i]) || v[i] > 1.0 || v[0] < 0.0) abort();
    return 0;
}
