/* Model files and checkpoints (safetensors headers, metadata, tensors). */
#include "fuzz_input.h"
#include "lsr/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.safetensors", data, size);
    lsr_model *m = NULL;
    if (lsr_model_load(&m, path) == LSR_OK) lsr_model_free(m);
    lsr_train_state *st = NULL;
    lsr_train_settings s;
    char *note = NULL;
    if (lsr_checkpoint_load(&m, &st, &s, &note, path) == LSR_OK) {
        lsr_train_state_free(st);
        lsr_model_free(m);
        free(note);
    }
    if (lsr_checkpoint_load(NULL, NULL, &s, NULL, path) == LSR_OK) {
        /* the settings alone */
    }
    return 0;
}
