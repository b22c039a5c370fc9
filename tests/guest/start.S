/*
 * Entry of the hostile test guest, through the PVH boot ABI: the VMM (wisp, or QEMU
 * -M microvm) enters at _start in 32-bit protected mode, paging off, flat 4 GiB
 * segments, interrupts off, with EBX = physical address of struct hvm_start_info.
 * The guest simply stays in that mode; hostile.c is compiled with -m32.
 */

/* The PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18, name "Xen"): how the VMM finds
 * _start. hostile.ld gives this section its own PT_NOTE program header. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 4			/* descsz: a 32-bit physical address */
	.long 18		/* type: XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long _start

	.section .text.start, "ax"
	.code32
	.globl _start
_start:
	cli
	cld
	/* wisp zeroes p_memsz beyond p_filesz, but another loader might not: C expects a
	 * zeroed .bss. EBX (the start info) is left alone; the stack is not in use yet. */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb
	movl $stack_top, %esp
	pushl %ebx		/* hostile_main(const struct hvm_start_info *) */
	call hostile_main
	/* hostile_main ends the VM; should that fail, stop here. */
1:	cli
	hlt
	jmp 1b

	.section .bss
	.balign 16
	.skip 16384
stack_top:
