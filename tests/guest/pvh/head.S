/*
 * head.S - the PVH entry of the test guest (the same guest code as the
 * bzImage build, booted as an ELF through the PVH boot ABI).
 *
 * The monitor enters pvh_start in 32-bit protected mode with paging off
 * and %ebx = the hvm_start_info, as the ELF note below tells it to.  The
 * stub identity-maps the low 4 GiB with 2 MiB pages (RAM, the PCI BARs,
 * the local APIC), turns on PAE and long mode, loads a GDT of its own and
 * jumps to 64-bit code, which calls guest_pvh_main(start_info).
 */
	/* XEN_ELFNOTE_PHYS32_ENTRY (18): name "Xen", a 4-byte address. */
	.section .note.Xen, "a", @note
	.p2align 2
	.long	4, 4, 18
	.asciz	"Xen"
	.long	pvh_start

	.section .head.text, "ax"
	.code32
	.globl pvh_start
pvh_start:
	cli
	movl	%ebx, %esi			/* keep the start_info */
	/* Four page directories of 512 2 MiB pages: 0-4 GiB. */
	movl	$pvh_pd, %edi
	movl	$0x83, %eax			/* present, writable, 2 MiB */
	movl	$2048, %ecx
1:	movl	%eax, (%edi)
	addl	$0x200000, %eax
	addl	$8, %edi
	loop	1b
	movl	$pvh_pdpt, %edi
	movl	$pvh_pd + 0x3, (%edi)
	movl	$pvh_pd + 0x1003, 8(%edi)
	movl	$pvh_pd + 0x2003, 16(%edi)
	movl	$pvh_pd + 0x3003, 24(%edi)
	movl	$pvh_pdpt + 0x3, pvh_pml4
	movl	$pvh_pml4, %eax
	movl	%eax, %cr3
	movl	%cr4, %eax
	orl	$0x20, %eax			/* PAE */
	movl	%eax, %cr4
	movl	$0xc0000080, %ecx		/* EFER */
	rdmsr
	orl	$0x100, %eax			/* LME */
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000001, %eax		/* PG, PE */
	movl	%eax, %cr0
	lgdt	pvh_gdt_desc
	ljmp	$0x08, $pvh_start64

	.code64
pvh_start64:
	movl	$0x10, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%esi, %edi			/* zero-extends: the start_info */
	movq	$guest_stack_top, %rsp
	call	guest_pvh_main
2:	hlt
	jmp	2b

	.section .rodata
	.p2align 3
pvh_gdt:
	.quad	0
	.quad	0x00af9b000000ffff		/* 0x08: 64-bit code */
	.quad	0x00cf93000000ffff		/* 0x10: flat data */
pvh_gdt_desc:
	.word	pvh_gdt_desc - pvh_gdt - 1
	.long	pvh_gdt

	.section .bss
	.p2align 12
pvh_pml4:	.skip 4096
pvh_pdpt:	.skip 4096
pvh_pd:		.skip 4 * 4096

	.section .note.GNU-stack, "", @progbits
