/*
 * The hand-over a payload gets from kexec (petitboot) instead of from skiboot: the same as
 * _start's (real mode, %r3 = the device tree), but with %r8/%r9 undefined. Self-test image
 * only: nothing enters here unless a boot test points a copy's e_entry at it, to show that
 * the image then finds OPAL in the device tree (all ones: an address nothing may call).
 */
    .text
    .globl  pefbox_entry_without_opal_registers
    .type   pefbox_entry_without_opal_registers, @function
pefbox_entry_without_opal_registers:
    li      %r8, -1
    li      %r9, -1
    b       _start
    .size   pefbox_entry_without_opal_registers, . - pefbox_entry_without_opal_registers
