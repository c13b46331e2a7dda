/*
 * cycles.c: a QEMU TCG plugin that estimates Cortex-M4 cycles.
 *
 * QEMU's -icount shift=0 counts instructions: an LDM of eight registers counts
 * as one, a taken branch as one. This plugin weights each executed Thumb
 * instruction by the cycle counts of the Cortex-M4 Technical Reference Manual
 * (ARM DDI 0439, "Processor instruction set summary", "Load/store timings" and
 * the FPU's "instruction set" table) and records, at every read of the
 * firmware's counter (TIM2's CNT register, 0x4000_0024 on the STM32F405 of
 * QEMU's netduinoplus2, see ../src/counter.rs), the running instruction count
 * and cycle estimate. At exit it writes each interval between two consecutive
 * reads as "instructions cycles" to the file named by out=PATH, so that the
 * intervals line up one for one with the firmware's own measurements.
 *
 * Build: cycles/build.sh (cc -O2 -shared -fPIC). Run:
 *   qemu-system-arm ... -icount shift=0 -plugin libcycles.so,out=intervals.txt
 * Arguments (all optional but out): refill=P (pipeline refill, default 2),
 * div=N (cycles of SDIV/UDIV, default 12), addr=A (the counter register,
 * default 0x40000024), verify=1 (computes the same model a second, slower
 * way, instruction by instruction, and reports intervals that disagree),
 * profile=PATH (writes, for every instruction address executed, how often it
 * ran and its cycles before pipelining and refills: "address count cost";
 * cycles/profile.py sums them per function).
 *
 * The cost model (N = registers transferred, P = pipeline refill):
 *
 *   data processing, shifts, extends, bit fields, saturation,
 *   SIMD (SADD16, SXTAB16, ...), IT, hints, MRS/MSR, barriers    1
 *   MUL, MLA, MLS, SMULL, UMULL, SMLAL, UMLAL, SMLAD, SMLALD,
 *   SMMLA, SMUL<x><y> and every other multiply                  1
 *   SDIV, UDIV                              div= (default 12, the TRM's
 *                                           upper bound of 2-12; the real
 *                                           count depends on the operands)
 *   LDR, LDRB, LDRH, LDRSB, LDRSH, LDREX, STREX (any addressing)  2, or 1
 *       when pipelined: the previous instruction was one of these
 *       single loads and its destination register is not used in this
 *       instruction's address (base or offset register)
 *   STR, STRB, STRH with an immediate offset (the store buffer)    1
 *   STR, STRB, STRH with a register offset            2, or 1 when pipelined
 *   LDRD, STRD                                         3 (1+N, not pipelined)
 *   LDM, STM, PUSH, POP                                1+N (not pipelined)
 *   branches: B, B<c>, BL, BX, BLX, CBZ, CBNZ           1, plus P if taken
 *   other writes of the PC: POP {..pc}, LDM {..pc}     as above, plus P if
 *       (1+N+P), LDR pc (2+P), MOV/ADD pc (1+P)        the PC moved
 *   TBB, TBH                                           2+P
 *   VADD, VSUB, VMUL, VNMUL, VABS, VNEG, VCMP, VCVT,
 *   VMOV (any), VMRS, VMSR                             1 (VMOV of two core
 *                                                      registers: 2)
 *   VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS  3
 *   VDIV, VSQRT                                        14
 *   VLDR, VSTR (single)                                2 (3 for a double)
 *   VLDM, VSTM, VPUSH, VPOP                            1+N (N words)
 *
 * "Taken" means the next instruction executed is not the one after the
 * branch in memory: every instruction that can write the PC ends QEMU's
 * translation block, so the first instruction of the next block says where
 * the branch went. P is 2 by default: the TRM gives 1 to 3, depending on the
 * target's alignment and width and on whether the core speculated it.
 *
 * Assumptions: zero wait states on every fetch, load and store (flash and
 * RAM alike: the STM32F4's flash accelerator hides most of its wait states,
 * not all of them), no bus contention, aligned accesses, no interrupts
 * or exception entry costs (the firmware takes none while it measures).
 * Not modelled: an instruction of an IT block whose condition fails is
 * charged as if it ran (a failed branch is seen and not charged the
 * refill); IT folding; the extra cycle a load or store can take when its
 * address register was written by the instruction just before it; the
 * cycle LDR Rx,[PC,#imm] may lose to the fetch unit; a load pipelined
 * across the end of a translation block after an I/O access.
 *
 * The plugin API is QEMU's, version 1 (QEMU 7.2, the version Debian 12
 * ships); the declarations below are written from its public documentation
 * (docs/devel/tcg-plugins.rst and the API reference), since Debian installs
 * no qemu-plugin.h. QEMU 9 and later renamed parts of it.
 */

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the part of QEMU's plugin API (version 1) this plugin uses ---- */

typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    /* followed by a union this plugin does not read */
} qemu_info_t;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;
EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv);

/* ---- settings and state ---- */

static uint64_t refill = 2;        /* P: cycles of a pipeline refill */
static uint64_t divide = 12;       /* SDIV, UDIV */
static uint64_t counter_addr = 0x40000024;
static const char *out_path;

/* Updated by inline adds QEMU compiles into the translated code: exact for a
 * single vCPU (the Cortex-M machines have one). */
static uint64_t instructions;
static uint64_t cycles;
static uint64_t taken_branches;

struct reading {
    uint64_t instructions;
    uint64_t cycles;
    uint64_t verify_cycles;
    uint32_t pc;
};
static struct reading *readings;
static size_t n_readings, readings_capacity;

/* What an instruction is, for the costs that depend on its neighbours. */
enum {
    LOAD = 1,      /* a single load (or LDREX/STREX) a next access can pipeline behind */
    PIPELINED = 2, /* costs one cycle less after a LOAD it does not depend on */
    BRANCH = 4,    /* may write the PC: plus P when the next PC is not the next instruction */
    WORD_LOAD = 8, /* a word load from a register base: may read the counter */
};

struct decoded {
    uint32_t cost;    /* cycles, before pipelining and refills */
    uint32_t kind;    /* the flags above */
    uint32_t dest;    /* LOAD: registers written (bit n = rn) */
    uint32_t address; /* PIPELINED: registers the address is computed from */
};

/* One per translation block: what the first and last instructions need to
 * know about each other across blocks. */
struct block {
    uint32_t start;       /* address of the first instruction */
    uint32_t next;        /* address after the last instruction */
    uint32_t first_kind;  /* the first instruction's flags ... */
    uint32_t first_address;
    uint32_t last_kind;   /* ... and the last's */
    uint32_t last_dest;
};
static const struct block *previous_block;

/* verify=1: the same model computed a second, slower way, instruction by
 * instruction in a callback that sees the instruction executed before it,
 * with no reliance on translation blocks; every interval must agree. */
static bool verify;
static uint64_t verify_cycles;
struct executed {
    uint32_t vaddr, next;
    struct decoded d;
};
static const struct executed *previous_executed;

/* profile=PATH: one counter per translated instruction (an address
 * translated twice has two, summed at exit). */
static const char *profile_path;
struct counted {
    uint32_t vaddr, cost;
    uint64_t count;
    struct counted *next;
};
static struct counted *counted;

#define REG(n) (1u << (n))

static uint32_t popcount(uint32_t x) { return (uint32_t)__builtin_popcount(x); }

/* ---- decoding (ARMv7-M Architecture Reference Manual, Thumb encodings) ---- */

static struct decoded decode16(uint32_t hw)
{
    struct decoded d = {1, 0, 0, 0};
    switch (hw >> 12) {
    case 0x4:
        if ((hw & 0xF800) == 0x4800) { /* LDR (literal) */
            d = (struct decoded){2, LOAD | PIPELINED, REG((hw >> 8) & 7), 0};
        } else if ((hw & 0xFF00) == 0x4700) { /* BX, BLX (register) */
            d.kind = BRANCH;
        } else if ((hw & 0xFC00) == 0x4400) { /* ADD, CMP, MOV with high registers */
            uint32_t rd = ((hw >> 4) & 8) | (hw & 7);
            if (((hw >> 8) & 3) != 1 && rd == 15) {
                d.kind = BRANCH;
            }
        }
        break;
    case 0x5: { /* load/store, register offset */
        uint32_t op = (hw >> 9) & 7;
        uint32_t address = REG((hw >> 6) & 7) | REG((hw >> 3) & 7);
        if (op >= 3) { /* LDRSB, LDR, LDRH, LDRB, LDRSH */
            d = (struct decoded){2, LOAD | PIPELINED | (op == 4 ? WORD_LOAD : 0), REG(hw & 7), address};
        } else { /* STR, STRH, STRB */
            d = (struct decoded){2, PIPELINED, 0, address};
        }
        break;
    }
    case 0x6: case 0x7: case 0x8: /* word, byte, halfword with an immediate offset */
        if (hw & 0x0800) {
            uint32_t word = (hw >> 11) == 0xD;
            d = (struct decoded){2, LOAD | PIPELINED | (word ? WORD_LOAD : 0), REG(hw & 7), REG((hw >> 3) & 7)};
        } /* else a store with an immediate offset: 1 */
        break;
    case 0x9: /* SP-relative */
        if (hw & 0x0800) {
            d = (struct decoded){2, LOAD | PIPELINED, REG((hw >> 8) & 7), REG(13)};
        }
        break;
    case 0xB:
        if ((hw & 0xF500) == 0xB100) { /* CBZ, CBNZ */
            d.kind = BRANCH;
        } else if ((hw & 0xFE00) == 0xB400) { /* PUSH */
            d.cost = 1 + popcount(hw & 0x1FF);
        } else if ((hw & 0xFE00) == 0xBC00) { /* POP */
            d.cost = 1 + popcount(hw & 0x1FF);
            if (hw & 0x100) {
                d.kind = BRANCH;
            }
        }
        break;
    case 0xC: /* STM, LDM */
        d.cost = 1 + popcount(hw & 0xFF);
        break;
    case 0xD: /* B<c>; 0xDE is UDF, 0xDF SVC */
        if (((hw >> 8) & 0xF) < 0xE) {
            d.kind = BRANCH;
        }
        break;
    case 0xE: /* B */
        if ((hw & 0xF800) == 0xE000) {
            d.kind = BRANCH;
        }
        break;
    }
    return d;
}

/* Floating point (coprocessors 10 and 11) and other coprocessor instructions. */
static struct decoded decode_coprocessor(uint32_t hw1, uint32_t hw2)
{
    struct decoded d = {1, 0, 0, 0};
    uint32_t coprocessor = (hw2 >> 8) & 0xF;
    uint32_t op = (hw1 >> 4) & 0x3F;
    if ((coprocessor & 0xE) != 0xA) {
        return d;
    }
    if ((op & 0x3E) == 0x04) { /* VMOV between two core registers and two singles or a double */
        d.cost = 2;
    } else if ((op & 0x20) == 0) { /* extension register loads and stores */
        uint32_t p = hw1 & 0x100, w = hw1 & 0x20;
        if (p && !w) {
            d.cost = coprocessor == 0xB ? 3 : 2; /* VLDR, VSTR */
        } else {
            d.cost = 1 + (hw2 & 0xFF); /* VLDM, VSTM, VPUSH, VPOP: imm8 words */
        }
    } else if ((op & 0x30) == 0x20 && !(hw2 & 0x10)) { /* data processing */
        uint32_t opc1 = (hw1 >> 4) & 0xB, opc2 = hw1 & 0xF, opc3 = (hw2 >> 6) & 3;
        switch (opc1) {
        case 0x0: case 0x1: /* VMLA, VMLS, VNMLA, VNMLS */
        case 0x9: case 0xA: /* VFNMA, VFNMS, VFMA, VFMS */
            d.cost = 3;
            break;
        case 0x8: /* VDIV */
            d.cost = 14;
            break;
        case 0xB: /* VMOV, VABS, VNEG, VSQRT, VCMP, VCVT */
            d.cost = (opc2 == 1 && opc3 == 3) ? 14 : 1;
            break;
        default: /* VMUL, VNMUL, VADD, VSUB */
            break;
        }
    } /* else VMOV core <-> single, VMRS, VMSR: 1 */
    return d;
}

static struct decoded decode32(uint32_t hw1, uint32_t hw2)
{
    struct decoded d = {1, 0, 0, 0};
    if ((hw1 & 0xEC00) == 0xEC00) {
        return decode_coprocessor(hw1, hw2);
    }
    switch ((hw1 >> 11) & 3) {
    case 1:
        if ((hw1 & 0xFE40) == 0xE800) { /* LDM, STM (PUSH, POP) */
            d.cost = 1 + popcount(hw2);
            if ((hw1 & 0x10) && (hw2 & 0x8000)) {
                d.kind = BRANCH;
            }
        } else if ((hw1 & 0xFE40) == 0xE840) { /* dual, exclusive, table branch */
            uint32_t op1 = (hw1 >> 7) & 3, op2 = (hw1 >> 4) & 3, rn = REG(hw1 & 0xF);
            if (op1 == 0 && op2 == 0) { /* STREX: pipelines like a load */
                d = (struct decoded){2, LOAD | PIPELINED, REG((hw2 >> 8) & 0xF), rn};
            } else if (op1 == 0 && op2 == 1) { /* LDREX */
                d = (struct decoded){2, LOAD | PIPELINED, REG(hw2 >> 12), rn};
            } else if ((op1 & 2) || (op2 & 2)) { /* LDRD, STRD */
                d.cost = 3;
            } else if (op1 == 1 && op2 == 1 && ((hw2 >> 4) & 0xF) <= 1) { /* TBB, TBH */
                d.cost = 2 + (uint32_t)refill;
            } else if (op2 == 1) { /* LDREXB, LDREXH */
                d = (struct decoded){2, LOAD | PIPELINED, REG(hw2 >> 12), rn};
            } else { /* STREXB, STREXH */
                d = (struct decoded){2, LOAD | PIPELINED, REG(hw2 & 0xF), rn};
            }
        } /* else data processing (shifted register): 1 */
        break;
    case 2:
        if (hw2 & 0x8000) {
            uint32_t op = hw2 & 0x5000;
            if (op == 0x5000 || op == 0x1000) { /* BL, B (T4) */
                d.kind = BRANCH;
            } else if (op == 0 && (hw1 & 0x0380) != 0x0380) { /* B<c> (T3) */
                d.kind = BRANCH;
            } /* else MSR, MRS, hints, barriers: 1 */
        } /* else data processing (immediate): 1 */
        break;
    case 3:
        if ((hw1 & 0xFE00) == 0xF800) { /* load or store a single byte, halfword or word */
            uint32_t size = (hw1 >> 5) & 3, rn = hw1 & 0xF, rt = hw2 >> 12;
            bool register_offset = !(hw1 & 0x80) && (hw2 & 0x0FC0) == 0;
            uint32_t address = rn == 15 ? 0 : REG(rn) | (register_offset ? REG(hw2 & 0xF) : 0);
            if (hw1 & 0x10) {
                if (rt == 15 && size != 2) {
                    /* PLD, PLI: hints, 1 */
                } else if (rt == 15) { /* LDR pc */
                    d = (struct decoded){2, BRANCH, 0, 0};
                } else {
                    uint32_t word = size == 2 && rn != 15 && rn != 13 ? WORD_LOAD : 0;
                    d = (struct decoded){2, LOAD | PIPELINED | word, REG(rt), address};
                }
            } else if (register_offset) {
                d = (struct decoded){2, PIPELINED, 0, address};
            } /* else a store with an immediate offset: 1 */
        } else if ((hw1 & 0xFF80) == 0xFB80) { /* long multiply, divide */
            uint32_t op1 = (hw1 >> 4) & 7;
            if ((op1 == 1 || op1 == 3) && ((hw2 >> 4) & 0xF) == 0xF) {
                d.cost = (uint32_t)divide;
            }
        } /* else data processing (register), multiplies: 1 */
        break;
    }
    return d;
}

/* The instruction's length in bytes, from its first halfword: 32-bit Thumb
 * instructions start with 0b11101, 0b11110 or 0b11111. Not from
 * qemu_plugin_insn_size: QEMU 7.2 adds to the last instruction of a block
 * the halfword it read to see whether the next instruction crosses a page. */
static uint32_t thumb_size(uint32_t hw1)
{
    return (hw1 >> 11) >= 0x1D ? 4 : 2;
}

static struct decoded decode(const struct qemu_plugin_insn *insn, uint32_t *size)
{
    const uint8_t *bytes = qemu_plugin_insn_data(insn);
    uint32_t hw1 = bytes[0] | (uint32_t)bytes[1] << 8;
    *size = thumb_size(hw1);
    if (*size == 4 && qemu_plugin_insn_size(insn) >= 4) {
        return decode32(hw1, bytes[2] | (uint32_t)bytes[3] << 8);
    }
    return decode16(hw1);
}

/* Whether `d` loses a cycle when it follows `before`. */
static bool pipelines(uint32_t before_kind, uint32_t before_dest, const struct decoded *d)
{
    return (before_kind & LOAD) && (d->kind & PIPELINED) && !(before_dest & d->address);
}

/* ---- run time ---- */

static void block_start(unsigned int vcpu_index, void *userdata)
{
    const struct block *block = userdata;
    const struct block *before = previous_block;
    (void)vcpu_index;
    if (before) {
        if (before->last_kind & BRANCH) {
            if (block->start != before->next) {
                cycles += refill;
                taken_branches++;
            }
        } else if (block->start == before->next && (before->last_kind & LOAD) &&
                   (block->first_kind & PIPELINED) && !(before->last_dest & block->first_address)) {
            cycles -= 1;
        }
    }
    previous_block = block;
}

static void executed(unsigned int vcpu_index, void *userdata)
{
    const struct executed *now = userdata, *before = previous_executed;
    uint64_t cost = now->d.cost;
    (void)vcpu_index;
    if (before) {
        if (before->d.kind & BRANCH) {
            cost += now->vaddr != before->next ? refill : 0;
        } else if (now->vaddr == before->next && pipelines(before->d.kind, before->d.dest, &now->d)) {
            cost -= 1;
        }
    }
    verify_cycles += cost;
    previous_executed = now;
}

static void word_load(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr, void *userdata)
{
    (void)vcpu_index;
    (void)info;
    if (vaddr != counter_addr) {
        return;
    }
    if (n_readings == readings_capacity) {
        readings_capacity = readings_capacity ? 2 * readings_capacity : 4096;
        readings = realloc(readings, readings_capacity * sizeof *readings);
        if (!readings) {
            fputs("cycles: out of memory\n", stderr);
            abort();
        }
    }
    readings[n_readings++] = (struct reading){instructions, cycles, verify_cycles, (uint32_t)(uintptr_t)userdata};
    /* An I/O access ends QEMU's block early and resumes in a new one: the
     * next block's first instruction did not follow a block's last. */
    previous_block = NULL;
    previous_executed = NULL;
}

static void translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    struct block *block;
    struct decoded before = {0, 0, 0, 0};
    (void)id;
    if (n == 0) {
        return;
    }
    /* Kept for the life of the translation (QEMU does not say when it drops one). */
    block = calloc(1, sizeof *block);
    if (!block) {
        fputs("cycles: out of memory\n", stderr);
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t size;
        struct decoded d = decode(insn, &size);
        uint64_t cost = d.cost;
        uint32_t vaddr = (uint32_t)qemu_plugin_insn_vaddr(insn);
        if (i == 0) {
            block->start = vaddr;
            block->first_kind = d.kind;
            block->first_address = d.address;
            qemu_plugin_register_vcpu_insn_exec_cb(insn, block_start, QEMU_PLUGIN_CB_NO_REGS, block);
        } else if (pipelines(before.kind, before.dest, &d)) {
            cost -= 1;
        }
        if (i == n - 1) {
            block->next = vaddr + size;
            block->last_kind = d.kind;
            block->last_dest = d.dest;
        }
        /* Both run before the instruction: one that an I/O access stops
         * and QEMU runs again (in a block with memory callbacks only) is
         * counted once, as -icount counts it. */
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &instructions, 1);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &cycles, cost);
        if (profile_path) {
            struct counted *c = calloc(1, sizeof *c);
            if (!c) {
                fputs("cycles: out of memory\n", stderr);
                abort();
            }
            *c = (struct counted){vaddr, d.cost, 0, counted};
            counted = c;
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &c->count, 1);
        }
        if (verify) {
            struct executed *e = malloc(sizeof *e);
            if (!e) {
                fputs("cycles: out of memory\n", stderr);
                abort();
            }
            *e = (struct executed){vaddr, vaddr + size, d};
            qemu_plugin_register_vcpu_insn_exec_cb(insn, executed, QEMU_PLUGIN_CB_NO_REGS, e);
        }
        if (d.kind & WORD_LOAD) {
            /* Reads and writes: QEMU 7.2 calls no callback registered for
             * reads alone (QEMU_PLUGIN_MEM_R). These instructions only read. */
            qemu_plugin_register_vcpu_mem_cb(insn, word_load, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW,
                                             (void *)(uintptr_t)vaddr);
        }
        before = d;
    }
}

static void write_profile(void)
{
    FILE *out = fopen(profile_path, "w");
    if (!out) {
        fprintf(stderr, "cycles: cannot write %s\n", profile_path);
        return;
    }
    fputs("# address count cost (cycles before pipelining and refills), per translation\n", out);
    for (const struct counted *c = counted; c; c = c->next) {
        if (c->count) {
            fprintf(out, "0x%08" PRIx32 " %" PRIu64 " %" PRIu32 "\n", c->vaddr, c->count, c->cost);
        }
    }
    fclose(out);
}

static void finish(qemu_plugin_id_t id, void *userdata)
{
    FILE *out;
    char line[256];
    (void)id;
    (void)userdata;
    if (profile_path) {
        write_profile();
    }
    out = fopen(out_path, "w");
    if (!out) {
        snprintf(line, sizeof line, "cycles: cannot write %s\n", out_path);
        fputs(line, stderr);
        return;
    }
    fprintf(out, "# Cortex-M4 cycle estimate (cycles.c: refill %" PRIu64 ", divide %" PRIu64 ")\n", refill,
            divide);
    fprintf(out, "# %zu reads of 0x%08" PRIx64 "; in all %" PRIu64 " instructions, %" PRIu64
                 " cycles, %" PRIu64 " taken branches\n",
            n_readings, counter_addr, instructions, cycles, taken_branches);
    fprintf(out, "# one line per interval between consecutive reads: instructions cycles pc-of-the-read\n");
    size_t disagreements = 0;
    for (size_t i = 1; i < n_readings; i++) {
        uint64_t c = readings[i].cycles - readings[i - 1].cycles;
        fprintf(out, "%" PRIu64 " %" PRIu64 " 0x%08" PRIx32 "\n", readings[i].instructions - readings[i - 1].instructions,
                c, readings[i].pc);
        disagreements += verify && c != readings[i].verify_cycles - readings[i - 1].verify_cycles;
    }
    if (verify) {
        fprintf(out, "# verify: %zu intervals disagree with the instruction-by-instruction computation\n", disagreements);
    }
    fclose(out);
    if (disagreements) {
        snprintf(line, sizeof line, "cycles: %zu intervals disagree with verify=1's computation\n", disagreements);
        fputs(line, stderr);
    }
    snprintf(line, sizeof line, "cycles: %zu intervals, %" PRIu64 " instructions, %" PRIu64 " cycles in all, written to %s\n",
             n_readings ? n_readings - 1 : 0, instructions, cycles, out_path);
    fputs(line, stderr);
}

static bool parse_number(const char *text, uint64_t *value)
{
    char *end;
    *value = strtoull(text, &end, 0);
    return *text && !*end;
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    if (!info->system_emulation || strcmp(info->target_name, "arm") != 0) {
        fprintf(stderr, "cycles: needs qemu-system-arm (this is %s)\n", info->target_name);
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        bool ok;
        if (strncmp(arg, "out=", 4) == 0) {
            out_path = arg + 4;
            ok = *out_path;
        } else if (strncmp(arg, "refill=", 7) == 0) {
            ok = parse_number(arg + 7, &refill) && refill <= 3;
        } else if (strncmp(arg, "div=", 4) == 0) {
            ok = parse_number(arg + 4, &divide) && divide >= 2 && divide <= 12;
        } else if (strncmp(arg, "profile=", 8) == 0) {
            profile_path = arg + 8;
            ok = *profile_path;
        } else if (strcmp(arg, "verify=1") == 0) {
            verify = ok = true;
        } else if (strncmp(arg, "addr=", 5) == 0) {
            ok = parse_number(arg + 5, &counter_addr);
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "cycles: bad argument '%s' (out=PATH, refill=0..3, div=2..12, addr=ADDRESS, verify=1)\n", arg);
            return -1;
        }
    }
    if (!out_path) {
        fprintf(stderr, "cycles: name the output file: -plugin libcycles.so,out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, translate);
    qemu_plugin_register_atexit_cb(id, finish, NULL);
    return 0;
}
