/*
 * Reset and fault handling for the CMSIS-NN harness on netduinoplus2
 * (STM32F405): the vector table, .data copied from flash, .bss cleared, the
 * FPU enabled (the harness is built for the hard-float ABI), then main().
 */

#include <stdint.h>

extern uint32_t _stack_top, _data_start, _data_end, _data_load, _bss_start, _bss_end;
int main(void);
__attribute__((noreturn)) void exit_with(int status);

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

__attribute__((noreturn)) void reset_handler(void)
{
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11: full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    for (uint32_t *from = &_data_load, *to = &_data_start; to < &_data_end;) {
        *to++ = *from++;
    }
    for (uint32_t *to = &_bss_start; to < &_bss_end;) {
        *to++ = 0;
    }
    exit_with(main());
}

__attribute__((noreturn)) static void fault_handler(void)
{
    exit_with(102);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&_stack_top,
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
};
