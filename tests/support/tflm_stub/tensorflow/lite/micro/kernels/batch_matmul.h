// edgec's test stub of tflite-micro's kernels/batch_matmul.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_BATCH_MATMUL_H_
#define EDGEC_TFLM_STUB_KERNELS_BATCH_MATMUL_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_BATCH_MATMUL)

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_BATCH_MATMUL_INT8)
EDGEC_STUB_REGISTRATION(Register_BATCH_MATMUL_INT16)
#else
inline TFLMRegistration Register_BATCH_MATMUL_INT8() { return Register_BATCH_MATMUL(); }
inline TFLMRegistration Register_BATCH_MATMUL_INT16() { return Register_BATCH_MATMUL(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_BATCH_MATMUL_H_
