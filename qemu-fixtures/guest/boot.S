/* Multiboot v1 entry for postcopy-guest. Loaded by QEMU -kernel at 1 MiB. */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003            /* page-align modules, want mem info */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text
        .code32
        .globl _start
_start:
        cli                             /* IF=0 for the whole lifetime */
        cld
        lgdt gdt_desc                   /* own flat GDT, multiboot's may be gone */
        ljmp $0x08, $1f
1:      movw $0x10, %cx
        movw %cx, %ds
        movw %cx, %es
        movw %cx, %fs
        movw %cx, %gs
        movw %cx, %ss
        movl %eax, %esi                 /* multiboot magic */
        movl $__bss_start, %edi         /* zero .bss (ebx = mbi is preserved) */
        movl $__bss_end, %ecx
        subl %edi, %ecx
        xorl %eax, %eax
        rep stosb
        movl $stack_top, %esp
        pushl %ebx
        pushl %esi
        call kmain
2:      jmp 2b                          /* kmain never returns; never halt */

        .section .rodata
        .align 8
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF        /* 0x08: code 4G flat */
        .quad 0x00CF92000000FFFF        /* 0x10: data 4G flat */
gdt_desc:
        .word gdt_desc - gdt - 1
        .long gdt

        .section .stack, "aw", @nobits
        .align 16
        .space 65536
stack_top:

        .section .note.GNU-stack, "", @progbits
