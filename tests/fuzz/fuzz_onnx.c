/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Fuzz target: untrusted bytes -> dl_onnx_to_graph -> free. Besides memory
 * errors (sanitizers), it aborts on broken contracts: a failure without a
 * message or with a graph left behind, or a success whose graph is
 * inconsistent. The first byte picks an input size override (0: the
 * file's) so symbolic sizes are reached too. */
#include "dermlens_test.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int side = 0;
    if (size > 0 && data[0] == 0xA5) { /* a marker byte: then the next byte is the side */
        side = size > 1 ? data[1] % 64 : 0;
        data += size > 1 ? 2 : 1;
        size -= size > 1 ? 2 : 1;
    }
    dl_graph g;
    dl_error err = {0};
    if (dl_onnx_to_graph(data, size, side, side, &g, &err) == 0) {
        if (g.n_nodes < 2 || g.output < 1 || g.output >= g.n_nodes || g.features >= g.n_nodes ||
            g.nodes[0].op != DL_OP_INPUT || g.nodes[0].c != 3 || g.nodes[g.output].h * g.nodes[g.output].w != 1)
            abort();
        for (int i = 1; i < g.n_nodes; i++)
            for (int k = 0; k < g.nodes[i].n_inputs; k++)
                if (g.nodes[i].inputs[k] < 0 || g.nodes[i].inputs[k] >= i) abort();
        /* the graph must pass the same validation as a loaded model */
        dl_error e2 = {0};
        if (dl_graph_infer(&g, &e2) != 0) abort();
    } else {
        if (err.message[0] == '\0' || g.n_nodes != 0 || g.n_tensors != 0) abort();
    }
    dl_graph_free(&g);
    return 0;
}
