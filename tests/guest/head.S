/*
 * head.S - the test guest's bzImage setup header and entry points.
 *
 * The monitor exercises its real Linux loader on this file: it checks
 * the same header fields as for a Linux bzImage (boot protocol 2.15,
 * XLF_KERNEL_64, relocatable, init_size) and enters at 1 MiB + 0x200 in
 * long mode with %rsi = the zero page, as boot.rst's 64-bit protocol says.
 * (The PVH build of the same guest has its own head: pvh/head.S.)
 */
	.section .setup, "a"
	.code16
	.org 0x1f1
setup_sects:	.byte 1			/* boot sector + 1 setup sector */
root_flags:	.word 0
syssize:	.long guest_syssize
ram_size:	.word 0
vid_mode:	.word 0
root_dev:	.word 0
boot_flag:	.word 0xaa55
	.org 0x200
	.byte 0xeb, hdr_end - 0x202	/* jump over the header */
	.ascii "HdrS"
version:	.word 0x020f
realmode_swtch:	.long 0
start_sys_seg:	.word 0
kernel_version:	.word 0
type_of_loader:	.byte 0
loadflags:	.byte 0x01		/* LOADED_HIGH */
setup_move_size: .word 0
code32_start:	.long 0x100000
ramdisk_image:	.long 0
ramdisk_size:	.long 0
bootsect_kludge: .long 0
heap_end_ptr:	.word 0
ext_loader_ver:	.byte 0
ext_loader_type: .byte 0
cmd_line_ptr:	.long 0
initrd_addr_max: .long 0x7fffffff
kernel_alignment: .long 0x200000
relocatable_kernel: .byte 1
min_alignment:	.byte 21
xloadflags:	.word 0x0001		/* XLF_KERNEL_64 */
cmdline_size:	.long 2047
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset:	.long 0
payload_length:	.long 0
setup_data:	.quad 0
pref_address:	.quad 0x100000
init_size:	.long guest_init_size
handover_offset: .long 0
kernel_info_offset: .long 0
hdr_end:
	.org 0x400

	.section .head.text, "ax"
	.code32
startup_32:
	/* 32-bit entry: not supported by this guest. */
	ud2
	.org 0x200
	.code64
	.globl startup_64
startup_64:
	cli
	leaq	guest_stack_top(%rip), %rsp
	movq	%rsi, %rdi		/* the zero page */
	call	guest_main
1:	hlt
	jmp	1b

	.section .note.GNU-stack, "", @progbits
