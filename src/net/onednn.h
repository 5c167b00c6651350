/* The one oneDNN CPU engine of liblsr (conv2d_onednn.c), for the files that
 * build primitives (built with LSR_HAVE_ONEDNN only). */
#ifndef LSR_NET_ONEDNN_H
#define LSR_NET_ONEDNN_H

#include <oneapi/dnnl/dnnl.h>

/* The engine, made once whichever thread asks first; NULL where it cannot be. */
dnnl_engine_t lsr__onednn_engine(void);

#endif
