/* simt_memory.cpp: emulated device memory for the SIMT emulator (test-only).
 * Each cudaMalloc is a memfd of whole pages mapped twice (see simt_internal.h):
 *   host view:   [guard][data pages, PROT_NONE][guard]   its address is what cudaMalloc returns
 *   device view: [guard][data pages, read-write][guard]  kernels and shims use it (dev_view)
 * The buffer sits at the same offset in both, ending at the end of the data pages up to its
 * alignment (the largest power of two dividing the size, between 16 and 256 bytes), so an overrun
 * in a kernel hits the guard page at once. The bytes of the data pages outside the buffer (head and
 * tail slack) hold 0xFF canaries; new buffers are 0xFF bytes too (NaN as float or double).
 * Freed buffers release their pages but keep their addresses reserved, PROT_NONE, in a quarantine
 * (up to 1 GiB of address space), so a late use faults and is named as a use after free.
 * Each allocation belongs to the device current on the calling thread when it was made, and
 * counts against that device's budget (NG_SIMT_DEVICE_MEM is per device).
 * No page protection changes on the hot paths: a launch or a shim call only translates pointers.
 * Must not: open the host view except through dev_fault_open during a launch. */
#include "simt_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

namespace ng_simt {
namespace {

struct alloc_rec {
    char *hmap, *dmap; /* host and device reservations, guards included (map_len bytes each) */
    size_t map_len;
    size_t data_len; /* data pages, at map + page */
    size_t offset;   /* of the buffer within the data pages */
    size_t size;
    unsigned long id;
    int device; /* current device of the thread that allocated it */
    char *hdata() const { return hmap + (map_len - data_len) / 2; }
    char *ddata() const { return dmap + (map_len - data_len) / 2; }
    char *huser() const { return hdata() + offset; }
    char *duser() const { return ddata() + offset; }
};

std::recursive_mutex mu;
std::map<uintptr_t, alloc_rec> live; /* by host-view buffer address */
std::deque<alloc_rec> quarantine;
size_t quarantine_bytes;
std::map<uintptr_t, size_t> pinned;  /* cudaMallocHost blocks */
std::vector<alloc_rec> fault_opened; /* host views opened by dev_fault_open in this launch */
size_t used_bytes[MAX_DEVICES]; /* per device */
unsigned long next_id = 1;

const size_t QUARANTINE_MAX = (size_t)1 << 30;

size_t page_size() {
    static size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* NG_SIMT_DEVICE_MEM: bytes, with an optional K/M/G suffix; default 16 GiB. */
size_t total_memory() {
    static size_t total = 0;
    if (total == 0) {
        const char *e = getenv("NG_SIMT_DEVICE_MEM");
        total = (size_t)16 << 30;
        if (e && *e) {
            char *end = NULL;
            unsigned long long v = strtoull(e, &end, 10);
            if (end && (*end == 'K' || *end == 'k')) v <<= 10;
            if (end && (*end == 'M' || *end == 'm')) v <<= 20;
            if (end && (*end == 'G' || *end == 'g')) v <<= 30;
            if (v > 0) total = (size_t)v;
        }
    }
    return total;
}

/* The live allocation whose host-view buffer holds p (or ends at p). */
const alloc_rec *find_live(const void *p) {
    uintptr_t u = (uintptr_t)p;
    auto it = live.upper_bound(u);
    if (it == live.begin()) return NULL;
    --it;
    const alloc_rec &a = it->second;
    if (u >= (uintptr_t)a.huser() && u <= (uintptr_t)a.huser() + a.size) return &a;
    return NULL;
}

/* First byte in [p, p + n) that is not 0xFF, or NULL. */
const unsigned char *first_bad(const char *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        if (w != ~(uint64_t)0) break;
    }
    for (; i < n; i++)
        if (b[i] != 0xFFu) return b + i;
    return NULL;
}

void check_one(const alloc_rec &a, const char *who) {
    const char *du = a.duser();
    const unsigned char *bad = first_bad(a.ddata(), a.offset);
    if (bad)
        fatal("%s wrote %zu bytes before the start of device allocation #%lu (%zu bytes at %p)",
              who, (size_t)(du - (const char *)bad), a.id, a.size, (void *)a.huser());
    bad = first_bad(du + a.size, a.data_len - a.offset - a.size);
    if (bad)
        fatal("%s wrote past the end of device allocation #%lu (%zu bytes at %p): byte %zu of the "
              "allocation",
              who, a.id, a.size, (void *)a.huser(), (size_t)((const char *)bad - du));
}

/* Replace [p, p + len) by a PROT_NONE reservation (drops the memfd pages). */
void reserve_only(char *p, size_t len) {
    if (mmap(p, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) ==
        MAP_FAILED)
        fatal("cannot re-reserve freed device memory: %s", strerror(errno));
}

bool in_map(uintptr_t u, const char *map, size_t map_len) {
    return u >= (uintptr_t)map && u < (uintptr_t)map + map_len;
}

} /* namespace */

cudaError_t dev_malloc(void **ptr, size_t size) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    size_t pg = page_size(), align = 16, padded;
    const int dev = current_device();
    if (size == 0) {
        *ptr = NULL;
        return cudaSuccess;
    }
    if (size > total_memory() - used_bytes[dev]) return cudaErrorMemoryAllocation;
    while (align < 256 && size % (align * 2) == 0) align *= 2;
    padded = round_up(size, align);
    alloc_rec a;
    a.data_len = round_up(padded, pg);
    a.map_len = a.data_len + 2 * pg;
    a.offset = a.data_len - padded;
    a.size = size;
    a.device = dev;
    int fd = memfd_create("ng_simt_device", MFD_CLOEXEC);
    if (fd < 0) fatal("memfd_create failed: %s", strerror(errno));
    if (ftruncate(fd, (off_t)a.data_len) != 0) {
        close(fd);
        return cudaErrorMemoryAllocation;
    }
    a.hmap = (char *)mmap(NULL, a.map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                          -1, 0);
    a.dmap = (char *)mmap(NULL, a.map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                          -1, 0);
    if (a.hmap == MAP_FAILED || a.dmap == MAP_FAILED ||
        mmap(a.hdata(), a.data_len, PROT_NONE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED ||
        mmap(a.ddata(), a.data_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) ==
            MAP_FAILED) {
        close(fd);
        if (a.hmap != MAP_FAILED) munmap(a.hmap, a.map_len);
        if (a.dmap != MAP_FAILED) munmap(a.dmap, a.map_len);
        return cudaErrorMemoryAllocation;
    }
    close(fd);
    memset(a.ddata(), 0xFF, a.data_len);
    a.id = next_id++;
    live[(uintptr_t)a.huser()] = a;
    used_bytes[dev] += size;
    *ptr = a.huser();
    return cudaSuccess;
}

cudaError_t dev_free(void *ptr) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    if (ptr == NULL) return cudaSuccess;
    auto it = live.find((uintptr_t)ptr);
    if (it == live.end()) {
        char what[256];
        dev_describe(ptr, what, sizeof what);
        note("cudaFree(%p): not the start of a live device allocation (%s)", ptr, what);
        return cudaErrorInvalidValue;
    }
    alloc_rec a = it->second;
    check_one(a, "a kernel or library call");
    live.erase(it);
    used_bytes[a.device] -= a.size;
    reserve_only(a.hdata(), a.data_len);
    reserve_only(a.ddata(), a.data_len);
    quarantine.push_back(a);
    quarantine_bytes += 2 * a.map_len;
    while (quarantine_bytes > QUARANTINE_MAX && quarantine.size() > 1) {
        alloc_rec &old = quarantine.front();
        munmap(old.hmap, old.map_len);
        munmap(old.dmap, old.map_len);
        quarantine_bytes -= 2 * old.map_len;
        quarantine.pop_front();
    }
    return cudaSuccess;
}

bool dev_range(const void *p, size_t bytes) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    const alloc_rec *a = find_live(p);
    return a && (size_t)(a->huser() + a->size - (const char *)p) >= bytes;
}

bool dev_pointer(const void *p) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    return find_live(p) != NULL;
}

int dev_device(const void *p) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    const alloc_rec *a = find_live(p);
    return a ? a->device : -1;
}

bool dev_on(const char *fn, const char *name, const void *p, int device, const char *what) {
    int d = dev_device(p);
    if (d < 0 || d == device) return true;
    note("%s: %s (%p) is memory of device %d but the %s belongs to device %d", fn, name, p, d,
         what, device);
    return false;
}

void *dev_view(const void *p) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    const alloc_rec *a = find_live(p);
    return a ? a->duser() + ((const char *)p - a->huser()) : NULL;
}

cudaError_t host_pinned_alloc(void **ptr, size_t size) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    void *p = NULL;
    if (posix_memalign(&p, page_size(), size ? size : 1) != 0) return cudaErrorMemoryAllocation;
    memset(p, 0xFF, size);
    pinned[(uintptr_t)p] = size;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t host_pinned_free(void *ptr) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    if (ptr == NULL) return cudaSuccess;
    auto it = pinned.find((uintptr_t)ptr);
    if (it == pinned.end()) return cudaErrorInvalidValue;
    pinned.erase(it);
    free(ptr);
    return cudaSuccess;
}

bool host_pinned(const void *p) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    uintptr_t u = (uintptr_t)p;
    auto it = pinned.upper_bound(u);
    if (it == pinned.begin()) return false;
    --it;
    return u <= it->first + it->second;
}

void dev_mem_info(int device, size_t *free_bytes, size_t *total_bytes) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    *total_bytes = total_memory();
    *free_bytes = total_memory() - used_bytes[device];
}

void dev_check_canaries(int device, const char *who) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    for (const auto &kv : live)
        if (device < 0 || kv.second.device == device) check_one(kv.second, who);
}

void dev_check_canaries_of(const void *p, const char *who) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    const alloc_rec *a = find_live(p);
    if (a) check_one(*a, who);
}

/* Runs in a signal handler, possibly on several OS threads at once: a spin lock, no mutex. */
bool dev_fault_open(const void *addr) {
    static std::atomic_flag busy = ATOMIC_FLAG_INIT;
    uintptr_t u = (uintptr_t)addr;
    bool opened = false;
    while (busy.test_and_set(std::memory_order_acquire)) {
    }
    for (const auto &kv : live) {
        const alloc_rec &a = kv.second;
        if (u >= (uintptr_t)a.hdata() && u < (uintptr_t)a.hdata() + a.data_len) {
            if (mprotect(a.hdata(), a.data_len, PROT_READ | PROT_WRITE) == 0) {
                fault_opened.push_back(a);
                opened = true;
            }
            break;
        }
    }
    busy.clear(std::memory_order_release);
    return opened;
}

void dev_fault_close(const char *who) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    for (const alloc_rec &a : fault_opened) {
        if (mprotect(a.hdata(), a.data_len, PROT_NONE) != 0)
            fatal("cannot protect device memory again: %s", strerror(errno));
        check_one(a, who);
    }
    fault_opened.clear();
}

/* Also called from the fault handler: no locking there (the process is about to abort). */
void dev_describe(const void *addr, char *buf, size_t len) {
    uintptr_t u = (uintptr_t)addr;
    if (u < page_size()) {
        snprintf(buf, len, "a NULL pointer (offset %zu)", (size_t)u);
        return;
    }
    for (const auto &kv : live) {
        const alloc_rec &a = kv.second;
        uintptr_t base;
        const char *view;
        if (in_map(u, a.dmap, a.map_len)) {
            base = (uintptr_t)a.duser();
            view = " (device view)";
        } else if (in_map(u, a.hmap, a.map_len)) {
            base = (uintptr_t)a.huser();
            view = "";
        } else {
            continue;
        }
        if (u < base)
            snprintf(buf, len,
                     "%zu bytes before the start of device allocation #%lu (%zu bytes at %p, "
                     "device %d)%s",
                     (size_t)(base - u), a.id, a.size, (void *)a.huser(), a.device, view);
        else if (u >= base + a.size)
            snprintf(buf, len,
                     "byte %zu of device allocation #%lu, which has %zu bytes (at %p, device "
                     "%d)%s",
                     (size_t)(u - base), a.id, a.size, (void *)a.huser(), a.device, view);
        else
            snprintf(buf, len, "byte %zu of device allocation #%lu (%zu bytes at %p, device %d)%s",
                     (size_t)(u - base), a.id, a.size, (void *)a.huser(), a.device, view);
        return;
    }
    for (const auto &a : quarantine) {
        if (in_map(u, a.hmap, a.map_len) || in_map(u, a.dmap, a.map_len)) {
            snprintf(buf, len,
                     "device allocation #%lu (%zu bytes at %p), already freed by cudaFree", a.id,
                     a.size, (void *)a.huser());
            return;
        }
    }
    snprintf(buf, len, "not device memory");
}

} /* namespace ng_simt */
