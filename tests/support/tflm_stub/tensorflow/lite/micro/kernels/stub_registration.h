// edgec's test stub: TFLMRegistration reduced to the name of the kernel it registers.
#ifndef EDGEC_TFLM_STUB_REGISTRATION_H_
#define EDGEC_TFLM_STUB_REGISTRATION_H_

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

namespace tflite {
struct TFLMRegistration {
  const char* name;
};
}  // namespace tflite

// A registration function defined by the stub (TFLM defines it in a kernel's .cc).
#define EDGEC_STUB_REGISTRATION(fn) \
  inline TFLMRegistration fn() { return TFLMRegistration{#fn}; }

#endif  // EDGEC_TFLM_STUB_REGISTRATION_H_
