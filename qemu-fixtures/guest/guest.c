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
#define SEED_KERN 0x6b65726eu
#define HOT_MAGIC 0x484f5450u              /* "HOTP" */
#define FB_MAGIC  0x46524d42u              /* "FRMB" */

/* Frame mode: the kernel set and the frame buffer live below REGION_BASE, after the image. */
#define KERN_BASE (4u * MiB)               /* at most 4 MiB */
#define FB_BASE   (8u * MiB)               /* at most 8 MiB */
#define MAX_WS_PAGES  4096u                /* 16 MiB read per frame at most */
#define MIN_WS_KIB    64u                  /* so that the window table stays small */
#define MAX_WINDOWS   8192u

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
static void putdec64(u64 v)
{
    u32 hi = div64_32(v, 1000000000u), lo = (u32)(v - (u64)hi * 1000000000u);
    if (!hi) { putdec(lo); return; }
    putdec(hi);
    for (u32 d = 100000000u; d; d /= 10) putch((char)('0' + lo / d % 10));
}

/* -------------------------------------------------------------- clock */
static int clk_pm;          /* 1: ACPI PM timer, 0: PIT channel 0 */
static u16 pm_port;
static u32 clk_freq, clk_mask, clk_last;
static u64 clk_ticks;
static u32 now_ms;
static u32 force_pit;       /* pit=1: do not use the ACPI PM timer */
static u32 tlb_flush;       /* tlbflush=1: flush the TLB on every tick (CR4.PGE toggled twice) */

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

/* Microseconds since clk_init, from the 64-bit tick count (exact, no 32-bit wrap). */
static u64 clk_us(void)
{
    u32 sec = div64_32(clk_ticks, clk_freq);
    u64 rem = clk_ticks - (u64)sec * clk_freq;
    return (u64)sec * 1000000u + div64_32(rem * 1000000u, clk_freq);
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
    if (tlb_flush) {
        /* Changing CR4.PGE flushes the whole TLB, also with paging off (as a kernel's context
         * switch does): QEMU's TCG then takes its slow write path again for every page. */
        u32 cr4;
        __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
        __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 ^ 0x80u) : "memory");
        __asm__ volatile("mov %0, %%cr4" : : "r"(cr4) : "memory");
    }
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

static void report(const char *rgn, u32 addr, u32 got, u32 want);
static u32 frame_mode;                     /* mode=frame */

/* Frame mode: before the writer overwrites a page, its header must still carry the previous
 * generation, so a page that went back to an older version after a migration is caught. */
static void hot_check_header(u32 i)
{
    const volatile u32 *p = (const volatile u32 *)(hot_addr + i * PAGE);
    u32 gen = hot_gen - 1;
    u32 hdr[4] = { HOT_MAGIC, gen, i, ~gen };
    for (u32 w = 0; w < 4; w++)
        if (p[w] != hdr[w]) report("hot", hot_addr + i * PAGE + w * 4, p[w], hdr[w]);
}

static void hot_step(void)
{
    if (!hot_pages) return;
    if (frame_mode) hot_check_header(hot_cur);
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
static u32 fps = 25, fws_kb = 2048, kern_kb = 256, fb_kb = 256;   /* frame mode */

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
            else if (streq(tok_, "tlbflush")) dst = &tlb_flush;
            else if (streq(tok_, "fps")) dst = &fps;
            else if (streq(tok_, "fws")) dst = &fws_kb;
            else if (streq(tok_, "kern")) dst = &kern_kb;
            else if (streq(tok_, "fb")) dst = &fb_kb;
            if (streq(tok_, "mode")) {
                if (streq(eq + 1, "frame")) frame_mode = 1;
                else if (streq(eq + 1, "verify")) frame_mode = 0;
                else { puts_("WARN bad value for mode (want frame or verify)\n"); }
            }
            else if (!dst) { puts_("WARN unknown key "); puts_(tok_); putch('\n'); }
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

/* --------------------------------------------------------- frame mode */
/* A video player's memory behaviour: every 1/fps s of the guest's clock, read a window of `fws`
 * KiB of the read-mostly "video" region (ro) in a freshly shuffled page order, read all of the
 * small "kernel" set, and write the frame buffer; then print FR <seq> <guest_us>. The window
 * order is reshuffled for every walk over ro, so over ceil(ro/fws) frames all of ro is read.
 * Heartbeats and the hot writer keep running between and inside frames (work()). */
static u32 kern_addr = KERN_BASE, fb_addr = FB_BASE;
static u32 kern_pages, fb_pages, ws_pages, n_windows;
static u16 ws_perm[MAX_WS_PAGES];          /* page order inside the window, per frame */
static u16 win_perm[MAX_WINDOWS];          /* window order, per walk */
static u32 rng = 0x2545f491u;              /* fixed seed: the same order on every run */
static u32 fr_seq;

static u32 rnd(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }
static void shuffle(u16 *a, u32 n)        /* Fisher-Yates */
{
    for (u32 i = n; i > 1; i--) {
        u32 j = (u32)(((u64)rnd() * i) >> 32);
        u16 t = a[i - 1]; a[i - 1] = a[j]; a[j] = t;
    }
}

static void fb_write_page(u32 i, u32 stamp)
{
    u32 *p = (u32 *)(fb_addr + i * PAGE);
    u32 b = hot_base(i, stamp) ^ FB_MAGIC;
    p[0] = FB_MAGIC; p[1] = stamp; p[2] = i; p[3] = ~stamp;
    for (u32 w = 4; w < WPP; w++) p[w] = hot_word(b, w);
}

/* The frame buffer must still hold the previous frame (stamp) before it is overwritten. */
static void fb_check_header(u32 i, u32 stamp)
{
    const volatile u32 *p = (const volatile u32 *)(fb_addr + i * PAGE);
    u32 hdr[4] = { FB_MAGIC, stamp, i, ~stamp };
    for (u32 w = 0; w < 4; w++)
        if (p[w] != hdr[w]) report("fb", fb_addr + i * PAGE + w * 4, p[w], hdr[w]);
}

static void frame_render(u32 window)
{
    for (u32 i = 0; i < kern_pages; i++) { work(); verify_pat_page("kern", kern_addr + i * PAGE, SEED_KERN); }
    if (ws_pages) {
        u32 first = window * ws_pages;     /* < ro_pages; the last window wraps to the start */
        shuffle(ws_perm, ws_pages);
        for (u32 i = 0; i < ws_pages; i++) {
            u32 pg = first + ws_perm[i];
            if (pg >= ro_pages) pg -= ro_pages;
            work();
            verify_pat_page("ro", ro_addr + pg * PAGE, SEED_RO);
        }
    }
    for (u32 i = 0; i < fb_pages; i++) { work(); fb_check_header(i, fr_seq); fb_write_page(i, fr_seq + 1); }
}

static void frame_setup(void)
{
    clamp("kern", &kern_kb, 4096);
    clamp("fb", &fb_kb, 8192);
    clamp("fps", &fps, 1000);
    if (!fps) { puts_("CLAMP fps=0->1\n"); fps = 1; }
    u32 max_ws = ro_mb * 1024u < MAX_WS_PAGES * 4u ? ro_mb * 1024u : MAX_WS_PAGES * 4u;
    clamp("fws", &fws_kb, max_ws);
    /* At most MAX_WINDOWS windows: raise the working set if ro needs it. */
    u32 min_ws = (ro_pages + MAX_WINDOWS - 1) / MAX_WINDOWS * 4u;
    if (ro_pages && fws_kb < min_ws) {
        puts_("CLAMP fws="); putdec(fws_kb); puts_("->"); putdec(min_ws); putch('\n');
        fws_kb = min_ws;
    }
    if (ro_pages && fws_kb < 4) { puts_("CLAMP fws="); putdec(fws_kb); puts_("->4\n"); fws_kb = 4; }
    kern_pages = kern_kb / 4; fb_pages = fb_kb / 4; ws_pages = fws_kb / 4;
    n_windows = ws_pages ? (ro_pages + ws_pages - 1) / ws_pages : 1;
    for (u32 i = 0; i < ws_pages; i++) ws_perm[i] = (u16)i;
    for (u32 i = 0; i < n_windows; i++) win_perm[i] = (u16)i;
    puts_("FRAME fps="); putdec(fps); puts_(" fws="); putdec(ws_pages * 4);
    puts_(" kern="); putdec(kern_pages * 4); puts_("@"); putaddr(kern_addr);
    puts_(" fb="); putdec(fb_pages * 4); puts_("@"); putaddr(fb_addr);
    puts_(" windows="); putdec(n_windows); putch('\n');
}

static void frame_fill(void)
{
    for (u32 i = 0; i < kern_pages; i++) { tick(); fill_pat_page(kern_addr + i * PAGE, SEED_KERN); }
    for (u32 i = 0; i < fb_pages; i++) { tick(); fb_write_page(i, 0); }
}

static void end_pass(u32 pass);

/* Never returns. Frame k is due at k/fps s after the first; a frame that is late by more than a
 * period is shown at once and the cadence restarts from it (a player drops frames, it does not
 * burst them). One pass = one walk over all windows, closed by CHECK and STAT. */
static void frame_loop(void)
{
    u32 q = clk_freq / fps, r = clk_freq % fps, acc = 0;
    u64 next = clk_ticks;
    for (u32 pass = 1;; pass++) {
        u32 t0 = now_ms, w0 = hot_written, g0 = hot_gen, f0 = fr_seq;
        v_sum = 0; v_bad = 0; v_first = 0; v_lines = 0;
        shuffle(win_perm, n_windows);
        for (u32 k = 0; k < n_windows; k++) {
            while (clk_ticks < next) work();
            frame_render(win_perm[k]);
            tick();
            puts_("FR "); putdec(fr_seq++); putch(' '); putdec64(clk_us()); putch('\n');
            next += q; acc += r;
            if (acc >= fps) { acc -= fps; next++; }
            if (clk_ticks >= next) { next = clk_ticks; acc = 0; }
        }
        end_pass(pass);
        u32 dt = now_ms - t0;
        puts_("STAT "); putdec(pass); puts_(" ms="); putdec(dt);
        puts_(" frames="); putdec(fr_seq - f0);
        puts_(" hot_pages="); putdec(hot_written - w0);
        puts_(" hot_mbps="); putdec(dt ? div64_32((u64)(hot_written - w0) * 1000u, dt * 256u) : 0);
        puts_(" gens="); putdec(hot_gen - g0); putch('\n');
    }
}

static void end_pass(u32 pass)
{
    tick();
    if (!v_bad) {
        puts_("CHECK OK "); putdec(pass); putch(' '); puthex(v_sum, 8); putch('\n');
    } else {
        puts_("CHECK FAIL "); putdec(pass); puts_(" first="); putaddr(v_first);
        puts_(" bad="); putdec(v_bad); putch('\n');
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
    if (frame_mode) frame_setup();

    hb_next = now_ms;
    /* Fill phase (heartbeats keep running). */
    if (frame_mode) frame_fill();
    for (u32 i = 0; i < ro_pages; i++) { tick(); fill_pat_page(ro_addr + i * PAGE, SEED_RO); }
    for (u32 i = 0; i < hot_pages; i++) { tick(); hot_write_page(i, 1); }
    hot_gen = 2; hot_cur = 0;
    for (u32 i = 0; i < cold_pages; i++) { tick(); fill_pat_page(cold_addr + i * PAGE, SEED_COLD); }
    tick();
    puts_("READY ro="); putdec(ro_mb); puts_(" hot="); putdec(hot_mb); puts_(" cold="); putdec(cold_mb);
    puts_(" rate="); putdec(rate_mb); puts_(" beat="); putdec(beat_ms); putch('\n');
    puts_("FILLED ms="); putdec(now_ms); putch('\n');
    tok = 0; tok_last = now_ms;
    if (frame_mode) frame_loop();

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
        end_pass(pass);
        u32 dt = now_ms - t0;
        puts_("STAT "); putdec(pass); puts_(" ms="); putdec(dt);
        puts_(" cold_off_mb="); putdec(coff0 / 256); puts_(" cold_mb="); putdec(cslice / 256);
        puts_(" hot_pages="); putdec(hot_written - w0);
        puts_(" hot_mbps="); putdec(dt ? div64_32((u64)(hot_written - w0) * 1000u, dt * 256u) : 0);
        puts_(" gens="); putdec(hot_gen - g0); putch('\n');
    }
}
