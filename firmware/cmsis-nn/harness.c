/*
 * Runs a TensorFlow Lite int8 model layer by layer with CMSIS-NN on QEMU's
 * netduinoplus2 (STM32F405, Cortex-M4F) and counts each layer's CMSIS-NN call
 * in instructions exactly as the tinycnn firmware counts (../src/counter.rs):
 * under -icount shift=0 QEMU clocks TIM2 at 1 GHz, one count per instruction;
 * the counter is read just before and just after the call, and the cost of an
 * empty measurement is subtracted. The interpreter's own work (what TFLM's
 * MicroInterpreter does between the calls) is not counted.
 *
 * model.h, written by extract.py from the .tflite, holds the weights, the
 * per-layer parameters, the input and TFLM's output for it, and run_layer().
 * Output goes to the host over semihosting (SYS_WRITE0); the exit status is
 * 0 when every call succeeded (and the output equals TFLM's, when known).
 */

#include <stdint.h>
#include <string.h>

#include "arm_nnfunctions.h"

/* STM32F4 registers (reference manual RM0090): RCC's APB1 clock enables and TIM2. */
#define RCC_APB1ENR (*(volatile uint32_t *)0x40023840u)
#define TIM2_CR1 (*(volatile uint32_t *)0x40000000u)
#define TIM2_EGR (*(volatile uint32_t *)0x40000014u)
#define TIM2_CNT (*(volatile uint32_t *)0x40000024u)
#define TIM2_PSC (*(volatile uint32_t *)0x40000028u)
#define TIM2_ARR (*(volatile uint32_t *)0x4000002Cu)

#define SCRATCH_BYTES 16384

struct layer_info {
    const char *op;
    const char *kernel;
    uint32_t macs;
};

static inline uint32_t counter_now(void)
{
    return TIM2_CNT;
}

#include "model.h"

static int8_t scratch[SCRATCH_BYTES] __attribute__((aligned(16)));

/* ---- semihosting ---- */

static int semihost(int operation, const void *argument)
{
    register int r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void put(const char *text)
{
    semihost(0x04, text); /* SYS_WRITE0 */
}

static void put_u(uint32_t value)
{
    char digits[11];
    int i = 10;
    digits[i] = 0;
    do {
        digits[--i] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    put(digits + i);
}

static void put_i(int32_t value)
{
    if (value < 0) {
        put("-");
        put_u((uint32_t)(-(int64_t)value));
    } else {
        put_u((uint32_t)value);
    }
}

__attribute__((noreturn)) void exit_with(int status)
{
    /* SYS_EXIT_EXTENDED: QEMU exits with the status. */
    const uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)status};
    semihost(0x20, block);
    for (;;) {
    }
}

/* ---- counting ---- */

static void counter_start(void)
{
    RCC_APB1ENR |= 1u; /* TIM2EN */
    TIM2_CR1 = 0;
    TIM2_PSC = 0;
    TIM2_ARR = 0xFFFFFFFFu;
    TIM2_EGR = 1u; /* UG: load the prescaler now */
    TIM2_CNT = 0;
    TIM2_CR1 = 1u; /* CEN */
}

/* Counts of a measurement around nothing: subtracted from every layer's. */
static uint32_t counter_overhead(void)
{
    uint32_t smallest = UINT32_MAX;
    for (int i = 0; i < 4; i++) {
        uint32_t start = counter_now();
        __asm__ volatile("" ::: "memory");
        uint32_t end = counter_now();
        if (end - start < smallest) {
            smallest = end - start;
        }
    }
    return smallest;
}

/* A loop of exactly 2 instructions per iteration (subs, bne), measured. */
__attribute__((noinline)) static uint32_t spin(uint32_t iterations)
{
    uint32_t start = counter_now();
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(iterations)::"cc");
    return counter_now() - start;
}

int main(void)
{
    int failures = 0;
    counter_start();
    const uint32_t overhead = counter_overhead();
    spin(1000);
    const uint32_t short_loop = spin(1000), long_loop = spin(50000), repeat = spin(50000);
    put("cmsis-nn " MODEL_NAME ": counter overhead ");
    put_u(overhead);
    put("; known loop of 98000 instructions took ");
    put_u(long_loop - short_loop);
    put(long_loop == repeat ? " counts, repeatably\n" : " counts, not repeatably\n");
    if (long_loop - short_loop != 98000 || long_loop != repeat) {
        put("the counter does not count instructions one for one: is QEMU run with -icount shift=0?\n");
        exit_with(4);
    }

    memcpy(arena + INPUT_OFFSET, input_data, INPUT_BYTES);
    uint64_t total = 0;
    for (int layer = 0; layer < LAYERS; layer++) {
        const int32_t size = layer_buffer_size(layer);
        if (size < 0 || size > SCRATCH_BYTES) {
            put("layer ");
            put_u((uint32_t)layer);
            put(": scratch buffer of ");
            put_i(size);
            put(" B does not fit\n");
            exit_with(3);
        }
        /* As TFLM: the scratch buffer when the kernel asks for one, else none. */
        const cmsis_nn_context context = {size > 0 ? scratch : NULL, 0};
        arm_cmsis_nn_status status;
        const uint32_t raw = run_layer(layer, &context, &status);
        const uint32_t count = raw - overhead;
        total += count;
        put("layer ");
        put_u((uint32_t)layer);
        put(" ");
        put(layer_info[layer].op);
        put(" ");
        put(layer_info[layer].kernel);
        put(" macs ");
        put_u(layer_info[layer].macs);
        put(" scratch ");
        put_u((uint32_t)size);
        put(" raw ");
        put_u(raw);
        put(": ");
        put_u(count);
        put(" instructions");
        if (status != ARM_CMSIS_NN_SUCCESS) {
            put(" FAILED (status ");
            put_i(status);
            put(")");
            failures++;
        }
        put("\n");
    }
    put("total: ");
    put_u((uint32_t)total);
    put(" instructions per inference, ");
    put_u(MODEL_MACS);
    put(" MACs\n");

    put("output:");
    for (int i = 0; i < OUTPUT_BYTES && i < 16; i++) {
        put(" ");
        put_i(arena[OUTPUT_OFFSET + i]);
    }
    put(OUTPUT_BYTES > 16 ? " ...\n" : "\n");
#if HAVE_EXPECTED
    int differ = 0;
    for (int i = 0; i < OUTPUT_BYTES; i++) {
        differ += arena[OUTPUT_OFFSET + i] != expected_output[i];
    }
    if (differ) {
        put("output: ");
        put_u((uint32_t)differ);
        put(" bytes differ from TensorFlow Lite Micro's\n");
        failures++;
    } else {
        put("output: equal to TensorFlow Lite Micro's, byte for byte\n");
    }
#endif
    exit_with(failures ? 1 : 0);
}
