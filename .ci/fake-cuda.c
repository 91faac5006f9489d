/*
 * fake-cuda.c: a stand-in for libcuda.so.1 and libnvrtc.so.13 (the same file serves as both), so that the C#
 * CUDA path (Native/Cuda, Accelerators/Cuda) runs end to end on a machine without a GPU. See check-cuda-plumbing.sh.
 *
 * What it models, and checks:
 *   - device memory is host memory; every pointer handed to a copy, memset or kernel must lie in a live allocation;
 *   - one in-order stream: asynchronous host-to-device copies are queued and only performed when something orders
 *     after them (a synchronous copy or memset, a stream or event synchronize, a kernel launch, or at random on
 *     cuEventQuery), so a staging buffer reused too early shows up as wrong data; their source must be pinned;
 *   - driver calls need a current context;
 *   - "NVRTC" checks the options and returns "FAKE\n<options>\n<source>" as the image; cuModuleGetFunction parses
 *     the kernel's parameter list from that source, and cuLaunchKernel checks the geometry (block = -DAFM_WG,
 *     one-dimensional, no dynamic shared memory, the device's stream) and every argument: pointers into live
 *     device allocations, int arguments non-negative, float arguments finite;
 *   - with the real NVRTC instead (FAKE_CUDA_CC=100, a device newer than the compiler, so that it emits PTX), the
 *     module is real PTX: cuModuleGetFunction reads the entry's parameters (.u64 pointer, .u32, .f32), its
 *     .maxntid and its static shared memory (at most 48 KiB) from it, and launches are checked against those.
 * Kernels do not run: outputs stay as they were. At exit it prints a summary line to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long u64;
enum { OK = 0, INVALID_VALUE = 1, INVALID_IMAGE = 200, INVALID_CONTEXT = 201, NOT_FOUND = 500, NOT_READY = 600 };

#define FAIL(code, ...) do { fprintf(stderr, "[fake-cuda] %s: ", __func__); fprintf(stderr, __VA_ARGS__); \
    fputc('\n', stderr); failures++; return code; } while (0)
#define NEED_CONTEXT() do { if (!context) FAIL(INVALID_CONTEXT, "no current context"); } while (0)

static long failures, launches, asyncCopies, eventWaits, ptxModules, occupancyQueries;
static int context;
static void report(void)
{
    fprintf(stderr, "[fake-cuda] %ld launches, %ld async copies, %ld event waits, %ld occupancy queries, %ld modules of real PTX, %ld failures\n",
        launches, asyncCopies, eventWaits, occupancyQueries, ptxModules, failures);
}
__attribute__((constructor)) static void init(void) { atexit(report); }

/* ---- allocations ---------------------------------------------------------------------------- */

#define MAX_ALLOCS 100000
static struct { u64 base, size; int pinned; } allocs[MAX_ALLOCS];
static int nallocs;

static int inside(u64 p, u64 n, int pinned)
{
    for (int i = 0; i < nallocs; i++)
        if (allocs[i].pinned == pinned && p >= allocs[i].base && p + n <= allocs[i].base + allocs[i].size) return 1;
    return 0;
}
static void track(void* p, u64 n, int pinned) { allocs[nallocs].base = (u64)p; allocs[nallocs].size = n; allocs[nallocs++].pinned = pinned; }
static int untrack(u64 p)
{
    for (int i = 0; i < nallocs; i++)
        if (allocs[i].base == p) { allocs[i] = allocs[--nallocs]; return 1; }
    return 0;
}
#define NEED_DEVICE(p, n) do { if (!inside((p), (n), 0)) FAIL(INVALID_VALUE, "%llu bytes at %#llx are not device memory", (u64)(n), (u64)(p)); } while (0)

/* ---- the stream: queued host-to-device copies ---------------------------------------------- */

#define MAX_QUEUED 100000
static struct { u64 dst; const void* src; size_t n; } queued[MAX_QUEUED];
static int nqueued;
static long enqueued, performed; /* copies ever queued / performed */

static void drain(void)
{
    for (int i = 0; i < nqueued; i++) memcpy((void*)queued[i].dst, queued[i].src, queued[i].n);
    performed += nqueued;
    nqueued = 0;
}

/* ---- driver: devices and contexts ------------------------------------------------------------ */

int cuInit(unsigned flags) { return OK; }
int cuDriverGetVersion(int* v) { *v = 13000; return OK; }
int cuGetErrorName(int e, const char** s) { *s = e == INVALID_VALUE ? "CUDA_ERROR_INVALID_VALUE" : "CUDA_ERROR_FAKE"; return OK; }
int cuGetErrorString(int e, const char** s) { *s = "fake"; return OK; }
int cuDeviceGetCount(int* n) { *n = 1; return OK; }
int cuDeviceGet(int* d, int ordinal) { if (ordinal != 0) return 101; *d = 0; return OK; }
int cuDeviceGetName(char* name, int len, int d) { snprintf(name, len, "Fake H100"); return OK; }
/* compute capability as 10 major + minor: 90 unless FAKE_CUDA_CC says otherwise */
static int cc(void)
{
    const char* e = getenv("FAKE_CUDA_CC");
    return e && atoi(e) > 0 ? atoi(e) : 90;
}
int cuDeviceGetAttribute(int* v, int attribute, int d)
{
    switch (attribute) {
    case 1: *v = 1024; return OK;     /* max threads per block */
    case 8: *v = 48 * 1024; return OK; /* shared memory per block */
    case 10: *v = 32; return OK;       /* warp size */
    case 13: *v = 1980000; return OK;  /* clock, kHz */
    case 16: *v = 132; return OK;      /* multiprocessors */
    case 75: *v = cc() / 10; return OK; /* compute capability */
    case 76: *v = cc() % 10; return OK;
    case 97: *v = 227 * 1024; return OK; /* opt-in shared memory per block */
    default: FAIL(INVALID_VALUE, "attribute %d", attribute);
    }
}
int cuDeviceTotalMem_v2(size_t* bytes, int d) { *bytes = 85000000000ULL; return OK; }
int cuDevicePrimaryCtxRetain(void** ctx, int d) { *ctx = (void*)0x1000; return OK; }
int cuDevicePrimaryCtxRelease_v2(int d) { return OK; }
int cuCtxSetCurrent(void* ctx) { context = ctx != NULL; return OK; }
int cuCtxSynchronize(void) { NEED_CONTEXT(); drain(); return OK; }

/* ---- driver: memory -------------------------------------------------------------------------- */

int cuMemGetInfo_v2(size_t* free, size_t* total) { *free = 80000000000ULL; *total = 85000000000ULL; return OK; }
int cuMemAlloc_v2(u64* p, size_t n)
{
    NEED_CONTEXT();
    void* m = malloc(n);
    memset(m, 0xA5, n); /* not zero: the accelerator must clear what it promises to be zero */
    track(m, n, 0);
    *p = (u64)m;
    return OK;
}
int cuMemFree_v2(u64 p) { NEED_CONTEXT(); drain(); if (!untrack(p)) FAIL(INVALID_VALUE, "%#llx", p); free((void*)p); return OK; }
int cuMemAllocHost_v2(void** p, size_t n) { NEED_CONTEXT(); *p = malloc(n); track(*p, n, 1); return OK; }
int cuMemFreeHost(void* p) { NEED_CONTEXT(); drain(); if (!untrack((u64)p)) FAIL(INVALID_VALUE, "%p", p); free(p); return OK; }

int cuMemcpyHtoD_v2(u64 dst, const void* src, size_t n) { NEED_CONTEXT(); drain(); NEED_DEVICE(dst, n); memcpy((void*)dst, src, n); return OK; }
int cuMemcpyDtoH_v2(void* dst, u64 src, size_t n) { NEED_CONTEXT(); drain(); NEED_DEVICE(src, n); memcpy(dst, (void*)src, n); return OK; }
int cuMemcpyDtoD_v2(u64 dst, u64 src, size_t n) { NEED_CONTEXT(); drain(); NEED_DEVICE(dst, n); NEED_DEVICE(src, n); memcpy((void*)dst, (void*)src, n); return OK; }
int cuMemcpyHtoDAsync_v2(u64 dst, const void* src, size_t n, void* stream)
{
    NEED_CONTEXT();
    NEED_DEVICE(dst, n);
    if (!inside((u64)src, n, 1)) FAIL(INVALID_VALUE, "the source is not pinned memory");
    if (!stream) FAIL(INVALID_VALUE, "the legacy default stream");
    if (nqueued == MAX_QUEUED) drain();
    queued[nqueued].dst = dst; queued[nqueued].src = src; queued[nqueued].n = n;
    nqueued++; enqueued++; asyncCopies++;
    return OK;
}
int cuMemcpyDtoHAsync_v2(void* dst, u64 src, size_t n, void* stream) { return cuMemcpyDtoH_v2(dst, src, n); }
int cuMemsetD8_v2(u64 dst, unsigned char v, size_t n) { NEED_CONTEXT(); drain(); NEED_DEVICE(dst, n); memset((void*)dst, v, n); return OK; }
int cuMemsetD32_v2(u64 dst, unsigned v, size_t n)
{
    NEED_CONTEXT(); drain(); NEED_DEVICE(dst, 4 * n);
    for (size_t i = 0; i < n; i++) ((unsigned*)dst)[i] = v;
    return OK;
}
int cuMemsetD8Async(u64 dst, unsigned char v, size_t n, void* stream) { return cuMemsetD8_v2(dst, v, n); }
int cuMemsetD32Async(u64 dst, unsigned v, size_t n, void* stream) { return cuMemsetD32_v2(dst, v, n); }

/* ---- driver: streams and events -------------------------------------------------------------- */

int cuStreamCreate(void** s, unsigned flags) { NEED_CONTEXT(); if (flags != 0) FAIL(INVALID_VALUE, "flags %u", flags); *s = malloc(1); return OK; }
int cuStreamDestroy_v2(void* s) { drain(); free(s); return OK; }
int cuStreamSynchronize(void* s) { NEED_CONTEXT(); drain(); return OK; }

typedef struct { int recorded; long after; } Event; /* complete once `after` copies have been performed */
int cuEventCreate(void** e, unsigned flags) { NEED_CONTEXT(); if (flags != 2) FAIL(INVALID_VALUE, "flags %u", flags); *e = calloc(1, sizeof(Event)); return OK; }
int cuEventRecord(void* e, void* stream)
{
    NEED_CONTEXT();
    if (!stream) FAIL(INVALID_VALUE, "the legacy default stream");
    ((Event*)e)->recorded = 1;
    ((Event*)e)->after = enqueued;
    return OK;
}
int cuEventQuery(void* e)
{
    static unsigned calls;
    if (performed < ((Event*)e)->after && ++calls % 3 == 0) drain(); /* the stream moves on now and then */
    return performed >= ((Event*)e)->after ? OK : NOT_READY;
}
int cuEventSynchronize(void* e)
{
    NEED_CONTEXT();
    if (!((Event*)e)->recorded) FAIL(INVALID_VALUE, "the event was never recorded");
    drain();
    eventWaits++;
    return OK;
}
int cuEventDestroy_v2(void* e) { free(e); return OK; }

/* ---- driver: modules and launches ------------------------------------------------------------ */

typedef struct { char* text; int wg; int ptx; } Module;
typedef struct { const char* name; Module* module; int nparams; char kinds[64]; int wg; } Function; /* kinds: p f i u; wg: the block size launches must use */

static int is_ptx(const char* s) { return strstr(s, ".version ") && strstr(s, ".target ") && strstr(s, ".entry "); }

int cuModuleLoadData(void** module, const void* image)
{
    NEED_CONTEXT();
    const char* s = image;
    int ptx = strncmp(s, "FAKE\n", 5) != 0;
    if (ptx && !is_ptx(s)) FAIL(INVALID_IMAGE, "neither PTX nor an image from the fake NVRTC");
    Module* m = calloc(1, sizeof *m);
    m->text = strdup(s);
    m->ptx = ptx;
    ptxModules += ptx;
    const char* wg = strstr(s, "-DAFM_WG=");
    m->wg = wg ? atoi(wg + 9) : -1;
    *module = m;
    return OK;
}
int cuModuleUnload(void* module) { drain(); return OK; }

/* The entry's parameters, .maxntid and static shared memory, from real PTX. */
static int ptx_function(Function* f, const char* text, const char* name)
{
    char pattern[256];
    snprintf(pattern, sizeof pattern, ".entry %s(", name);
    const char* p = strstr(text, pattern);
    if (!p) FAIL(NOT_FOUND, "no entry %s in the PTX", name);
    p += strlen(pattern);
    const char* close = strchr(p, ')');
    if (!close) FAIL(INVALID_IMAGE, "%s: unterminated parameter list", name);
    for (const char* q = p; (q = strstr(q, ".param ")) && q < close && f->nparams < 64; q += 7) {
        const char* type = q + 7;
        f->kinds[f->nparams++] = strncmp(type, ".u64", 4) == 0 ? 'p' : strncmp(type, ".f32", 4) == 0 ? 'f' : 'u';
    }
    const char* body = strchr(close, '{');
    if (!body) FAIL(INVALID_IMAGE, "%s: no body", name);
    const char* maxntid = strstr(close, ".maxntid ");
    f->wg = maxntid && maxntid < body ? atoi(maxntid + 9) : 0;
    if (f->wg <= 0) FAIL(INVALID_IMAGE, "%s: no .maxntid (the kernels declare __launch_bounds__)", name);
    /* static shared arrays are declared at the top of the body: .shared .align A .b8 NAME[BYTES]; */
    const char* end = strstr(body, "\n}");
    long shared = 0;
    for (const char* q = body; (q = strstr(q, ".shared ")) && (!end || q < end); q += 8) {
        const char* line_end = strchr(q, '\n');
        const char* br = strchr(q, '[');
        if (br && (!line_end || br < line_end) && strstr(q, ".b8") && strstr(q, ".b8") < br) shared += atol(br + 1);
    }
    if (shared > 48 * 1024) FAIL(INVALID_IMAGE, "%s: %ld bytes of static shared memory (> 48 KiB)", name, shared);
    return OK;
}

int cuModuleGetFunction(void** function, void* module, const char* name)
{
    NEED_CONTEXT();
    Module* m = module;
    Function* f = calloc(1, sizeof *f);
    f->name = strdup(name);
    f->module = m;
    f->wg = m->wg;
    if (m->ptx) {
        int status = ptx_function(f, m->text, name);
        if (status != OK) { free(f); return status; }
        *function = f;
        return OK;
    }
    char pattern[256];
    snprintf(pattern, sizeof pattern, "KERNEL %s(", name);
    const char* p = strstr(m->text, pattern);
    if (!p) { free(f); FAIL(NOT_FOUND, "no kernel %s", name); }
    char param[512];
    int len = 0;
    for (p += strlen(pattern); f->nparams < 64; p++) {
        if (*p == ',' || *p == ')') {
            param[len] = 0;
            f->kinds[f->nparams++] = strchr(param, '*') ? 'p' : strstr(param, "float") ? 'f' : strstr(param, "uint") ? 'u' : 'i';
            len = 0;
            if (*p == ')') break;
        } else if (len < 511) param[len++] = *p;
    }
    *function = f;
    return OK;
}
int cuFuncSetAttribute(void* f, int attribute, int value) { return OK; }
int cuFuncGetAttribute(int* v, int attribute, void* function)
{
    NEED_CONTEXT();
    if (!function) FAIL(INVALID_VALUE, "no function");
    switch (attribute) {
    case 1: case 3: *v = 0; return OK; /* static shared, local bytes */
    case 4: *v = 64; return OK;        /* registers */
    default: FAIL(INVALID_VALUE, "attribute %d", attribute);
    }
}
/* blocks resident per multiprocessor: FAKE_CUDA_OCCUPANCY, else 3 (fewer than the 4 planned, so that the
   accelerator re-plans its grid) */
int cuOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, void* function, int blockSize, size_t dynamicShared)
{
    NEED_CONTEXT();
    Function* f = function;
    if (blockSize != f->wg || dynamicShared != 0) FAIL(INVALID_VALUE, "%s: block %d (expected %d), %zu dynamic shared bytes", f->name, blockSize, f->wg, dynamicShared);
    const char* e = getenv("FAKE_CUDA_OCCUPANCY");
    *blocks = e ? atoi(e) : 3;
    occupancyQueries++;
    return OK;
}
int cuLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
    unsigned sharedBytes, void* stream, void** params, void** extra)
{
    NEED_CONTEXT();
    Function* f = function;
    if ((int)bx != f->wg || by != 1 || bz != 1 || gx < 1 || gy != 1 || gz != 1 || sharedBytes != 0 || !stream || extra)
        FAIL(INVALID_VALUE, "%s: grid %ux%ux%u, block %ux%ux%u (expected %d), %u shared bytes", f->name, gx, gy, gz, bx, by, bz, f->wg, sharedBytes);
    drain();
    for (int i = 0; i < f->nparams; i++) {
        const void* a = params[i];
        switch (f->kinds[i]) {
        case 'p': NEED_DEVICE(*(const u64*)a, 4); break;
        case 'i': if (*(const int*)a < 0) FAIL(INVALID_VALUE, "%s: int argument %d is %d", f->name, i, *(const int*)a); break;
        case 'f': { float v = *(const float*)a; if (!(v > -1e30f && v < 1e30f)) FAIL(INVALID_VALUE, "%s: float argument %d is %g", f->name, i, v); break; }
        }
    }
    launches++;
    return OK;
}

/* ---- NVRTC ------------------------------------------------------------------------------------ */

typedef struct { char* source; char* image; size_t size; int cubin; char log[256]; } Program;

int nvrtcVersion(int* major, int* minor) { *major = 13; *minor = 0; return 0; }
int nvrtcGetNumSupportedArchs(int* n) { *n = 6; return 0; }
int nvrtcGetSupportedArchs(int* archs) { static const int a[] = {75, 80, 86, 89, 90, 100}; memcpy(archs, a, sizeof a); return 0; }
int nvrtcCreateProgram(void** prog, const char* source, const char* name, int nheaders, const char** headers, const char** names)
{
    Program* p = calloc(1, sizeof *p);
    p->source = strdup(source);
    *prog = p;
    return 0;
}
int nvrtcCompileProgram(void* prog, int n, const char** options)
{
    Program* p = prog;
    p->image = malloc(strlen(p->source) + 16384);
    size_t at = (size_t)sprintf(p->image, "FAKE\n");
    int arch = 0, device = 0, std = 0, wg = 0;
    for (int i = 0; i < n; i++) {
        at += (size_t)sprintf(p->image + at, "%s ", options[i]);
        if (strncmp(options[i], "-arch=sm_", 9) == 0) arch = p->cubin = 1;
        if (strncmp(options[i], "-arch=compute_", 14) == 0) arch = 1;
        device |= strcmp(options[i], "-default-device") == 0;
        std |= strcmp(options[i], "--std=c++17") == 0;
        wg |= strncmp(options[i], "-DAFM_WG=", 9) == 0;
    }
    at += (size_t)sprintf(p->image + at, "\n%s", p->source);
    p->size = at + 1;
    if (arch && device && std && wg) return 0;
    snprintf(p->log, sizeof p->log, "fake NVRTC: missing -arch, -default-device, --std=c++17 or -DAFM_WG");
    return 6; /* NVRTC_ERROR_COMPILATION */
}
int nvrtcDestroyProgram(void** prog) { return 0; }
int nvrtcGetProgramLogSize(void* prog, size_t* n) { *n = strlen(((Program*)prog)->log) + 1; return 0; }
int nvrtcGetProgramLog(void* prog, char* log) { strcpy(log, ((Program*)prog)->log); return 0; }
int nvrtcGetPTXSize(void* prog, size_t* n) { *n = ((Program*)prog)->size; return 0; }
int nvrtcGetPTX(void* prog, char* out) { memcpy(out, ((Program*)prog)->image, ((Program*)prog)->size); return 0; }
int nvrtcGetCUBINSize(void* prog, size_t* n) { if (!((Program*)prog)->cubin) return 3; *n = ((Program*)prog)->size; return 0; }
int nvrtcGetCUBIN(void* prog, char* out) { memcpy(out, ((Program*)prog)->image, ((Program*)prog)->size); return 0; }
const char* nvrtcGetErrorString(int status) { return "fake NVRTC error"; }
