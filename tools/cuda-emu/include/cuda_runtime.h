// cuda_runtime.h for cuda-emu: device code needs nothing beyond the dialect header (which the
// JIT force-includes anyway); host-side runtime calls are not available in a kernel module.
#ifndef CUDA_EMU_RUNTIME_H
#define CUDA_EMU_RUNTIME_H
#include "cuda_emu.h"
#endif
