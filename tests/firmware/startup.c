/* Minimal Cortex-M startup for the QEMU proof: vector table, reset handler, semihosting.
 * newlib's rdimon (--specs=rdimon.specs) prints through semihosting; with -nostartfiles
 * it needs the linker symbol `end` and empty _init/_fini (shared/reference/facts.md s. 9).
 */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void exit(int status);

void _init(void) {}
void _fini(void) {}

void Reset_Handler(void) {
  uint32_t *src = &_sidata, *dst = &_sdata;
  while (dst < &_edata) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
  /* CPACR: full access to CP10/CP11, else the first FP instruction faults. */
  *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
  __asm volatile("dsb\n\tisb" ::: "memory");
#endif
  initialise_monitor_handles();
  exit(main());
}

/* A fault hangs; the test's QEMU timeout turns that into a failure. */
void Default_Handler(void) {
  for (;;) {
  }
}

typedef void (*handler_t)(void);
__attribute__((section(".isr_vector"), used)) const handler_t vectors[16] = {
    (handler_t)(uintptr_t)&_estack, Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler,
};
