/* Model files and checkpoints (safetensors headers, metadata, tensors). */
#include "fuzz_input.h"
#include "modelfile/modelfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.safetensors", data, size);
    char err[LSR_ERR_LEN];
    lsr_model m;
    lsr_metadata md;
    if (lsr_model_load(&m, &md, path, err) == 0) lsr_model_free(&m);
    lsr_train_state st;
    char *command = NULL;
    lsr_optimizer_settings os = lsr_optimizer_defaults();
    if (lsr_checkpoint_load(path, &m, &st, &os, 16, &command, err) == 0) {
        lsr_train_state_free(&st);
        lsr_model_free(&m);
        free(command);
    }
    if (lsr_checkpoint_load(path, &m, &st, NULL, -1, &command, err) == 0) {
        lsr_model_free(&m);
        free(command);
    }
    return 0;
}
