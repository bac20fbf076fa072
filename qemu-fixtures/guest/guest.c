/*
 * postcopy-guest: tiny freestanding multiboot "kernel" that dirties and
 * verifies memory for post-copy live-migration tests.  See README.md.
 * Runs with IF=0, paging off, polling a clock; output on COM1 only.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int s32;
typedef unsigned long long u64;

#define MiB            (1024u * 1024u)
#define PAGE           4096u
#define WPP            (PAGE / 4)          /* 32-bit words per page */
#define REGION_BASE    (16u * MiB)
#define TOP_MARGIN     (1u * MiB)
#define MAX_FAIL_LINES 8                   /* per pass */

#define SEED_RO   0x52f1a3c5u
#define SEED_COLD 0xc01dc0deu
#define HOT_MAGIC 0x484f5450u              /* "HOTP" */

extern char _end[];

/* ---------------------------------------------------------------- I/O */
static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0,%1" ::"a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1,%0" : "=a"(v) : "Nd"(p)); return v; }
static inline void outl(u16 p, u32 v) { __asm__ volatile("outl %0,%1" ::"a"(v), "Nd"(p)); }
static inline u32 inl(u16 p) { u32 v; __asm__ volatile("inl %1,%0" : "=a"(v) : "Nd"(p)); return v; }

/* 64/32 -> 32 division with divl; caller guarantees quotient fits. */
static inline u32 div64_32(u64 n, u32 d)
{
    u32 q, r, lo = (u32)n, hi = (u32)(n >> 32);
    if (hi >= d) return 0xffffffffu;
    __asm__("divl %4" : "=a"(q), "=d"(r) : "a"(lo), "d"(hi), "rm"(d));
    (void)r;
    return q;
}

/* ------------------------------------------------------------- serial */
#define COM1 0x3f8
static void uart_init(void)
{
    outb(COM1 + 1, 0x00);  /* no interrupts */
    outb(COM1 + 3, 0x80);  /* DLAB */
    outb(COM1 + 0, 0x01);  /* 115200 */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);  /* 8N1 */
    outb(COM1 + 2, 0xc7);  /* FIFO on, clear */
    outb(COM1 + 4, 0x03);  /* DTR RTS */
}
static void putch(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (u8)c);
}
static void puts_(const char *s) { while (*s) putch(*s++); }
static void putdec(u32 v)
{
    char b[12]; int i = 0;
    do { b[i++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (i) putch(b[--i]);
}
static void puthex(u32 v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) putch("0123456789abcdef"[(v >> (i * 4)) & 15]);
}
static void putaddr(u32 v) { puts_("0x"); puthex(v, 8); }

/* -------------------------------------------------------------- clock */
static int clk_pm;          /* 1: ACPI PM timer, 0: PIT channel 0 */
static u16 pm_port;
static u32 clk_freq, clk_mask, clk_last;
static u64 clk_ticks;
static u32 now_ms;
static u32 force_pit;       /* pit=1: do not use the ACPI PM timer */

static u32 pci_read(u32 bus, u32 dev, u32 fn, u32 reg)
{
    outl(0xcf8, 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc));
    return inl(0xcfc);
}

static u32 clk_raw(void)
{
    if (clk_pm) return inl(pm_port) & 0xffffffu;
    outb(0x43, 0x00);                       /* latch channel 0 */
    u32 lo = inb(0x40), hi = inb(0x40);
    return lo | hi << 8;
}

static void clk_poll(void)
{
    u32 c = clk_raw(), d;
    if (clk_pm) d = (c - clk_last) & clk_mask;   /* counts up */
    else d = (clk_last - c) & clk_mask;          /* counts down */
    clk_last = c;
    clk_ticks += d;
    now_ms = div64_32(clk_ticks * 1000u, clk_freq);
}

static void clk_init(void)
{
    /* PIT ch0, lobyte/hibyte, mode 2, reload 65536: always programmed. */
    outb(0x43, 0x34); outb(0x40, 0); outb(0x40, 0);

    /* ACPI PM timer (24 bit, 3.579545 MHz, wraps every 4.69 s) if the BIOS
     * enabled it: PIIX4 PM (pc) 00:01.3 or ICH9 LPC (q35) 00:1f.0. */
    u32 port = 0;
    u32 id = pci_read(0, 1, 3, 0);
    if (id == 0x71138086u) {
        u32 pmba = pci_read(0, 1, 3, 0x40) & 0xffc0u;
        if (pmba && (pci_read(0, 1, 3, 0x80) & 1)) port = pmba + 8;
    } else if (pci_read(0, 0x1f, 0, 0) == 0x29188086u) {
        u32 pmba = pci_read(0, 0x1f, 0, 0x40) & 0xff80u;
        if (pmba && (pci_read(0, 0x1f, 0, 0x44) & 0x80)) port = pmba + 8;
    }
    if (port && !force_pit) {
        u32 a = inl((u16)port) & 0xffffffu, b = a;
        for (int i = 0; i < 100000 && b == a; i++) b = inl((u16)port) & 0xffffffu;
        if (b != a) { clk_pm = 1; pm_port = (u16)port; }
    }
    if (clk_pm) { clk_freq = 3579545u; clk_mask = 0xffffffu; }
    else { clk_freq = 1193182u; clk_mask = 0xffffu; }
    clk_last = clk_raw();
    clk_ticks = 0;
    now_ms = 0;
}

/* -------------------------------------------------- heartbeat & pacing */
static u32 beat_ms = 20, rate_mb = 40;
static u32 hb_seq, hb_next;
static u32 tok, tok_last, tok_cap;         /* milli-pages */

static void tick(void)
{
    clk_poll();
    if (beat_ms && (s32)(now_ms - hb_next) >= 0) {
        puts_("HB "); putdec(hb_seq++); putch(' '); putdec(now_ms); putch('\n');
        hb_next += beat_ms;
        if ((s32)(now_ms - hb_next) >= 0) hb_next = now_ms + beat_ms;  /* no bursts */
    }
    u32 dms = now_ms - tok_last;
    tok_last = now_ms;
    if (rate_mb && dms) {
        if (dms > 50) dms = 50;
        tok += rate_mb * 256u * dms;        /* rate*256 pages/s = rate*256 mpages/ms */
        if (tok > tok_cap) tok = tok_cap;
    }
}

/* ------------------------------------------------------------ patterns */
static inline u32 pat(u32 seed, u32 addr)
{
    u32 x = (addr ^ seed) * 0x9e3779b1u;
    x ^= x >> 16;
    return x | 1u;                          /* never zero */
}
static inline u32 hot_base(u32 page, u32 gen)
{
    return (page * 0x9e3779b1u) ^ (gen * 0xc2b2ae35u) ^ 0x27d4eb2fu;
}
static inline u32 hot_word(u32 base, u32 w)
{
    u32 x = base ^ (w * 0x85ebca6bu);
    x ^= x >> 13;
    return x | 1u;
}

/* ------------------------------------------------------------- regions */
static u32 ro_mb = 64, hot_mb = 16, cold_mb = 0, cverify_mb = 64;
static u32 inject_pass;                   /* test only: corrupt memory before this pass */
static u32 ro_addr, hot_addr, cold_addr;
static u32 ro_pages, hot_pages, cold_pages;
static u32 hot_gen, hot_cur;               /* pages < hot_cur carry hot_gen, others hot_gen-1 */
static u32 hot_written;

static void fill_pat_page(u32 addr, u32 seed)
{
    u32 *p = (u32 *)addr;
    for (u32 w = 0; w < WPP; w++) p[w] = pat(seed, addr + w * 4);
}

static void hot_write_page(u32 i, u32 gen)
{
    u32 *p = (u32 *)(hot_addr + i * PAGE);
    u32 b = hot_base(i, gen);
    p[0] = HOT_MAGIC; p[1] = gen; p[2] = i; p[3] = ~gen;
    for (u32 w = 4; w < WPP; w++) p[w] = hot_word(b, w);
}

static void hot_step(void)
{
    if (!hot_pages) return;
    hot_write_page(hot_cur, hot_gen);
    hot_written++;
    if (++hot_cur == hot_pages) { hot_cur = 0; hot_gen++; }
}

/* Between two verified pages: write hot pages as allowed by the rate. */
static void work(void)
{
    tick();
    if (!hot_pages) return;
    if (!rate_mb) { hot_step(); return; }   /* rate=0: 1 hot write per verified page */
    for (int n = 0; n < 32 && tok >= 1000; n++) {
        tok -= 1000;
        hot_step();
        tick();
    }
}

/* per-pass verification state */
static u32 v_sum, v_bad, v_first, v_lines;

static void report(const char *rgn, u32 addr, u32 got, u32 want)
{
    if (!v_bad) v_first = addr;
    v_bad++;
    if (v_lines < MAX_FAIL_LINES) {
        v_lines++;
        puts_("FAIL "); puts_(rgn); puts_(" addr="); putaddr(addr);
        puts_(" got="); putaddr(got); puts_(" want="); putaddr(want); putch('\n');
    }
}

static void verify_pat_page(const char *rgn, u32 addr, u32 seed)
{
    const volatile u32 *p = (const volatile u32 *)addr;
    u32 s = 0, badw = 0;
    for (u32 w = 0; w < WPP; w++) {
        u32 v = p[w];
        s += v;
        badw |= v ^ pat(seed, addr + w * 4);
    }
    v_sum += s;
    if (badw)
        for (u32 w = 0; w < WPP; w++) {
            u32 want = pat(seed, addr + w * 4), v = p[w];
            if (v != want) report(rgn, addr + w * 4, v, want);
        }
}

static void verify_hot_page(u32 i)
{
    u32 addr = hot_addr + i * PAGE;
    const volatile u32 *p = (const volatile u32 *)addr;
    u32 gen = i < hot_cur ? hot_gen : hot_gen - 1;
    u32 b = hot_base(i, gen), s = 0, badw = 0;
    badw |= p[0] ^ HOT_MAGIC; badw |= p[1] ^ gen; badw |= p[2] ^ i; badw |= p[3] ^ ~gen;
    s = p[0] + p[1] + p[2] + p[3];
    for (u32 w = 4; w < WPP; w++) {
        u32 v = p[w];
        s += v;
        badw |= v ^ hot_word(b, w);
    }
    v_sum += s;
    if (badw) {
        u32 hdr[4] = { HOT_MAGIC, gen, i, ~gen };
        for (u32 w = 0; w < WPP; w++) {
            u32 want = w < 4 ? hdr[w] : hot_word(b, w), v = p[w];
            if (v != want) report("hot", addr + w * 4, v, want);
        }
    }
}

/* --------------------------------------------------------- multiboot */
struct mb_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline;
    u32 mods_count, mods_addr, syms[4], mmap_length, mmap_addr;
};

static char cmdline[512];

static int parse_u32(const char *s, u32 *out)
{
    u32 v = 0;
    if (!*s) return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (u32)(*s - '0');
    }
    *out = v;
    return 1;
}

static int streq(const char *a, const char *b) { while (*a && *a == *b) a++, b++; return *a == *b; }

static void parse_cmdline(void)
{
    char *s = cmdline;
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        char *tok_ = s, *eq = 0;
        while (*s && *s != ' ') { if (*s == '=' && !eq) eq = s; s++; }
        char saved = *s; *s = 0;
        if (eq) {
            *eq = 0;
            u32 v; u32 *dst = 0;
            if (streq(tok_, "ro")) dst = &ro_mb;
            else if (streq(tok_, "hot")) dst = &hot_mb;
            else if (streq(tok_, "cold")) dst = &cold_mb;
            else if (streq(tok_, "rate")) dst = &rate_mb;
            else if (streq(tok_, "beat")) dst = &beat_ms;
            else if (streq(tok_, "cverify")) dst = &cverify_mb;
            else if (streq(tok_, "inject")) dst = &inject_pass;
            else if (streq(tok_, "pit")) dst = &force_pit;
            if (!dst) { puts_("WARN unknown key "); puts_(tok_); putch('\n'); }
            else if (!parse_u32(eq + 1, &v)) { puts_("WARN bad value for "); puts_(tok_); putch('\n'); }
            else *dst = v;
            *eq = '=';
        }
        /* tokens without '=' (QEMU prepends the kernel path) are ignored */
        *s = saved;
    }
}

/* Top of the usable RAM block containing REGION_BASE. */
static u32 find_top(const struct mb_info *mbi)
{
    u64 top = 0;
    if (mbi && (mbi->flags & (1u << 6))) {
        u32 p = mbi->mmap_addr, end = mbi->mmap_addr + mbi->mmap_length;
        while (p + 24 <= end) {
            u32 size = *(u32 *)p;
            u64 base = *(u64 *)(p + 4), len = *(u64 *)(p + 12);
            u32 type = *(u32 *)(p + 20);
            if (type == 1 && base <= REGION_BASE && base + len > REGION_BASE)
                top = base + len;
            p += size + 4;
        }
    }
    if (!top && mbi && (mbi->flags & 1)) top = (u64)MiB + (u64)mbi->mem_upper * 1024u;
    if (!top) top = 64u * MiB;
    if (top > 0xfff00000ull) top = 0xfff00000ull;
    return (u32)top;
}

static void clamp(const char *name, u32 *v, u32 max)
{
    if (*v > max) {
        puts_("CLAMP "); puts_(name); putch('='); putdec(*v); puts_("->"); putdec(max); putch('\n');
        *v = max;
    }
}

/* --------------------------------------------------------------- main */
void kmain(u32 magic, const struct mb_info *mbi)
{
    uart_init();
    if (magic != 0x2badb002u) mbi = 0;
    if (mbi && (mbi->flags & 4) && mbi->cmdline) {
        const char *c = (const char *)mbi->cmdline;
        u32 i = 0;
        while (c[i] && i < sizeof(cmdline) - 1) { cmdline[i] = c[i]; i++; }
        cmdline[i] = 0;
    }
    puts_("\nBOOT postcopy-guest v1 cmdline=\""); puts_(cmdline); puts_("\"\n");
    if (!mbi) puts_("WARN no multiboot info, assuming 64 MiB RAM\n");
    parse_cmdline();

    clk_init();
    puts_("CLOCK "); puts_(clk_pm ? "pmtimer" : "pit");
    if (clk_pm) { puts_(" port="); putaddr(pm_port); }
    putch('\n');

    u32 top = find_top(mbi);
    u32 avail = top > REGION_BASE + TOP_MARGIN ? (top - REGION_BASE - TOP_MARGIN) / MiB : 0;
    puts_("MEM top="); putaddr(top); puts_(" base="); putaddr(REGION_BASE);
    puts_(" avail_mb="); putdec(avail); puts_(" image_end="); putaddr((u32)_end); putch('\n');

    clamp("ro", &ro_mb, avail);
    clamp("hot", &hot_mb, avail - ro_mb);
    if (cold_mb == 0) cold_mb = avail - ro_mb - hot_mb;   /* default: the rest */
    else clamp("cold", &cold_mb, avail - ro_mb - hot_mb);
    if (rate_mb > 10000) rate_mb = 10000;
    tok_cap = rate_mb * 256u * 50u;                       /* 50 ms of burst */

    ro_addr = REGION_BASE;
    hot_addr = ro_addr + ro_mb * MiB;
    cold_addr = hot_addr + hot_mb * MiB;
    ro_pages = ro_mb * 256; hot_pages = hot_mb * 256; cold_pages = cold_mb * 256;
    u32 cslice = (cverify_mb == 0 || cverify_mb >= cold_mb) ? cold_pages : cverify_mb * 256;

    puts_("CONFIG ro="); putdec(ro_mb); puts_("@"); putaddr(ro_addr);
    puts_(" hot="); putdec(hot_mb); puts_("@"); putaddr(hot_addr);
    puts_(" cold="); putdec(cold_mb); puts_("@"); putaddr(cold_addr);
    puts_(" cverify="); putdec(cslice / 256); puts_(" rate="); putdec(rate_mb);
    puts_(" beat="); putdec(beat_ms); putch('\n');

    hb_next = now_ms;
    /* Fill phase (heartbeats keep running). */
    for (u32 i = 0; i < ro_pages; i++) { tick(); fill_pat_page(ro_addr + i * PAGE, SEED_RO); }
    for (u32 i = 0; i < hot_pages; i++) { tick(); hot_write_page(i, 1); }
    hot_gen = 2; hot_cur = 0;
    for (u32 i = 0; i < cold_pages; i++) { tick(); fill_pat_page(cold_addr + i * PAGE, SEED_COLD); }
    tick();
    puts_("READY ro="); putdec(ro_mb); puts_(" hot="); putdec(hot_mb); puts_(" cold="); putdec(cold_mb);
    puts_(" rate="); putdec(rate_mb); puts_(" beat="); putdec(beat_ms); putch('\n');
    puts_("FILLED ms="); putdec(now_ms); putch('\n');
    tok = 0; tok_last = now_ms;

    u32 cold_off = 0;
    for (u32 pass = 1;; pass++) {
        u32 t0 = now_ms, w0 = hot_written, g0 = hot_gen;
        v_sum = 0; v_bad = 0; v_first = 0; v_lines = 0;
        if (pass == inject_pass) {
            /* Test hook: flip one word in each region (cold: in this pass's slice). */
            puts_("INJECT "); putdec(pass); putch('\n');
            if (ro_pages) *(volatile u32 *)(ro_addr + 12345 * 4 % (ro_pages * PAGE)) ^= 0x00010000u;
            if (hot_pages) *(volatile u32 *)(hot_addr + (hot_pages - 1) * PAGE + 100 * 4) ^= 0x00000100u;
            if (cold_pages) *(volatile u32 *)(cold_addr + cold_off * PAGE + 7 * 4) = 0;
        }
        for (u32 i = 0; i < ro_pages; i++) { work(); verify_pat_page("ro", ro_addr + i * PAGE, SEED_RO); }
        for (u32 i = 0; i < hot_pages; i++) { work(); verify_hot_page(i); }
        u32 coff0 = cold_off;
        for (u32 n = 0; n < cslice; n++) {
            work();
            verify_pat_page("cold", cold_addr + cold_off * PAGE, SEED_COLD);
            if (++cold_off == cold_pages) cold_off = 0;
        }
        tick();
        if (!v_bad) {
            puts_("CHECK OK "); putdec(pass); putch(' '); puthex(v_sum, 8); putch('\n');
        } else {
            puts_("CHECK FAIL "); putdec(pass); puts_(" first="); putaddr(v_first);
            puts_(" bad="); putdec(v_bad); putch('\n');
        }
        u32 dt = now_ms - t0;
        puts_("STAT "); putdec(pass); puts_(" ms="); putdec(dt);
        puts_(" cold_off_mb="); putdec(coff0 / 256); puts_(" cold_mb="); putdec(cslice / 256);
        puts_(" hot_pages="); putdec(hot_written - w0);
        puts_(" hot_mbps="); putdec(dt ? div64_32((u64)(hot_written - w0) * 1000u, dt * 256u) : 0);
        puts_(" gens="); putdec(hot_gen - g0); putch('\n');
    }
}
