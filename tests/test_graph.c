/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "testutil.h"
int main(void) { return 77; } /* written next */
