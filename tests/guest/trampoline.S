/*
 * trampoline.S - the test guest's AP start-up code, shared by its bzImage
 * and PVH builds.
 *
 * The second vCPU is started the PC way: the BSP copies ap_trampoline
 * to 0x6000 and sends INIT and STARTUP IPIs (vector 0x06) through its
 * local APIC; the AP wakes in real mode at 0600:0000, reads its initial
 * APIC id with CPUID and reports it in the mailbox, then halts.
 */
	.section .rodata
	.code16
	.globl ap_trampoline, ap_trampoline_end
ap_trampoline:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movl	$1, %eax
	cpuid
	shrl	$24, %ebx
	movb	%bl, 0x5ff1
	movb	$0xa5, 0x5ff0
2:	hlt
	jmp	2b
ap_trampoline_end:
	.section .note.GNU-stack, "", @progbits
