/* CSV datasets. */
#include "data/dataset.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lsr_dataset d;
    char err[LSR_ERR_LEN];
    if (lsr_csv_load(&d, fuzz_file("data.csv", data, size), err) == 0) lsr_dataset_free(&d);
    return 0;
}
