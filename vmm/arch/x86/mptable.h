/* mptable.h: MultiProcessor Specification 1.4 table layout, shared by the
 * writer (mptable.c) and the unit test that parses the result back. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define MP_SPEC_REV    4
#define MP_FPS_SIZE    16 /* floating pointer structure */
#define MP_HDR_SIZE    44 /* configuration table header */
#define MP_CPU_SIZE    20
#define MP_BUS_SIZE    8
#define MP_IOAPIC_SIZE 8
#define MP_INT_SIZE    8 /* I/O and local interrupt assignment */

#define MP_ENTRY_CPU    0
#define MP_ENTRY_BUS    1
#define MP_ENTRY_IOAPIC 2
#define MP_ENTRY_IOINT  3
#define MP_ENTRY_LINT   4

#define MP_INT_INT    0
#define MP_INT_NMI    1
#define MP_INT_EXTINT 3

#define MP_CPU_ENABLED    0x01
#define MP_CPU_BSP        0x02
#define MP_IOAPIC_ENABLED 0x01
#define MP_LAPIC_VERSION  0x14
#define MP_IOAPIC_VERSION 0x11
#define MP_CPU_SIGNATURE  0x600 /* family 6 */
#define MP_CPU_FEATURES   0x201 /* FPU | APIC */
#define MP_LAPIC_ADDR     0xFEE00000u
#define MP_IOAPIC_ADDR    0xFEC00000u
#define MP_IOAPIC_PINS    24
#define MP_NR_IOINTS      (MP_IOAPIC_PINS - 1) /* no entry for IRQ 2 */
#define MP_ISA_BUS_ID     0
#define MP_ALL_LAPICS     0xFF
#define MP_MAX_CPUS       32

/* The floating pointer and table live in the last KiB below 640 KiB. */
#define MP_AREA_SIZE 1024

/* Sum of the bytes, modulo 256: 0 for a valid structure. */
uint8_t mp_checksum(const uint8_t *p, size_t len);
/* Bytes written by x86_setup_mptable for nr_cpus (floating pointer included). */
size_t mp_table_size(unsigned nr_cpus);
