/* acpi_aml.h: a small writer of ACPI Machine Language (ACPI 6.5, chapter 20)
 * for the DSDT that acpi.c generates: names, integers, strings, devices,
 * methods, packages and the resource descriptors a microVM needs.
 *
 * Encodings follow what iasl emits for the same ASL (smallest integer form,
 * smallest PkgLength), so a table written here and the one iasl compiles
 * from its own disassembly are byte-for-byte equal (tests/unit/arch/test_acpi.c).
 * Errors stick: once the buffer is full every call does nothing and
 * aml_error() says so. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t cap, len;
	bool overflow;
};

#define AML_PKG_MAX_DEPTH 8

void aml_init(struct aml *a, uint8_t *buf, size_t cap);
/* 0, or -ENOSPC when something did not fit. */
int aml_error(const struct aml *a);

void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *p, size_t n);
/* A name path: "\\_SB_", "PWRB", "\\_SB_.PWRB"; segments shorter than 4
 * characters are padded with '_'. */
void aml_path(struct aml *a, const char *path);
/* ZeroOp, OneOp or the smallest of Byte/Word/DWord/QWord constants. */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* EisaId ("PNP0501"): a DWord constant (always 4 bytes, as iasl writes it). */
void aml_eisaid(struct aml *a, const char *id);

/* Open a PkgLength-prefixed body after the opcode; aml_pkg_end closes it
 * (the length is inserted in front of the body when it is known). */
size_t aml_pkg_begin(struct aml *a);
void aml_pkg_end(struct aml *a, size_t start);

/* Name (path, <next object written by the caller>) */
void aml_name(struct aml *a, const char *path);
/* Device (path) { ... }, Scope (path) { ... }, Method (path, nargs, serialized) { ... }:
 * each returns the start to pass to aml_pkg_end. */
size_t aml_device_begin(struct aml *a, const char *path);
size_t aml_scope_begin(struct aml *a, const char *path);
size_t aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized);
/* OperationRegion (name, SystemIO, port, len) and a one-field byte-access
 * Field (region, ByteAcc, NoLock, Preserve) { field, bits } */
void aml_io_region(struct aml *a, const char *name, uint16_t port, uint8_t len);
void aml_field(struct aml *a, const char *region, const char *field, unsigned bits);

/* Resource templates: aml_resources_begin, descriptors, aml_resources_end
 * (adds the end tag and the buffer length). */
size_t aml_resources_begin(struct aml *a, size_t *body);
void aml_resources_end(struct aml *a, size_t start, size_t body);
void aml_res_io(struct aml *a, uint16_t port, uint8_t len);           /* IO (Decode16, p, p, 0, len) */
void aml_res_irq_noflags(struct aml *a, unsigned irq);                /* IRQNoFlags () {irq} */
void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len); /* Memory32Fixed (ReadWrite, ...) */
/* Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi} */
void aml_res_interrupt_edge(struct aml *a, uint32_t gsi);

/* AML opcodes used by acpi.c's method bodies. */
#define AML_ZERO     0x00
#define AML_ONE      0x01
#define AML_NAME     0x08
#define AML_BYTE     0x0A
#define AML_WORD     0x0B
#define AML_DWORD    0x0C
#define AML_STRING   0x0D
#define AML_QWORD    0x0E
#define AML_SCOPE    0x10
#define AML_BUFFER   0x11
#define AML_PACKAGE  0x12
#define AML_METHOD   0x14
#define AML_DUAL     0x2E
#define AML_MULTI    0x2F
#define AML_EXT      0x5B
#define AML_ROOT     0x5C
#define AML_LOCAL0   0x60
#define AML_ARG0     0x68
#define AML_STORE    0x70
#define AML_AND      0x7B
#define AML_NOTIFY   0x86
#define AML_IF       0xA0
#define AML_RETURN   0xA4
#define AML_EXT_REGION 0x80
#define AML_EXT_FIELD  0x81
#define AML_EXT_DEVICE 0x82
