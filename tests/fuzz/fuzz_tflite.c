/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Fuzz target: untrusted bytes -> dl_tflite_to_graph -> free. Besides memory
 * errors (sanitizers), it aborts on broken contracts: a failure without a
 * message, or a success whose graph is inconsistent. */
#include "dermlens_test.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dl_graph g;
    dl_preprocess pre;
    dl_error err = {0};
    if (dl_tflite_to_graph(data, size, &g, &pre, &err) == 0) {
        if (g.n_nodes < 2 || g.output < 1 || g.output >= g.n_nodes || g.features >= g.n_nodes ||
            g.nodes[0].op != DL_OP_INPUT || pre.width != g.nodes[0].w || pre.height != g.nodes[0].h)
            abort();
        /* Every node's inputs come earlier (what the executor relies on). */
        for (int i = 1; i < g.n_nodes; i++)
            for (int k = 0; k < g.nodes[i].n_inputs; k++)
                if (g.nodes[i].inputs[k] < 0 || g.nodes[i].inputs[k] >= i) abort();
    } else {
        if (err.message[0] == '\0' || g.n_nodes != 0 || g.n_tensors != 0) abort();
    }
    dl_graph_free(&g);
    return 0;
}
