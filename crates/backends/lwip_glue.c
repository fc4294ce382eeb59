/* lwip_glue.c owns everything that touches lwIP's structs: loading one private copy of liblwip per host, the hooks that copy calls (virtual time, seeded rand and ISNs, our tcpip_try_callback), the netif, pbufs, PCB callbacks, and a narrow C API for stack/src/lwip.rs. */

/*
 * Why C: struct layouts (struct netif, struct tcp_pcb, struct pbuf, ip_addr_t) depend on
 * Debian's lwipopts.h, so only code compiled against those headers may look inside them.
 *
 * Why a private copy per host: lwIP keeps its state in globals. Each host gets its own copy of
 * the shared object (a memfd holding the library's bytes, dlopen'ed RTLD_NOW|RTLD_LOCAL), so
 * each has its own globals. The copy is never linked into the binary and never made global.
 *
 * Why GOT patching: lwIP calls sys_now(), rand(), tcp_next_iss() and tcpip_try_callback()
 * through its PLT. After loading a copy we rewrite those GOT slots (and abort's, and the
 * sys_arch_protect pair) in that copy only, to the hooks below. This needs no symbol exported
 * from the executable, so it works the same in every binary (tests, xtask, examples), and it
 * leaves the process's own rand() alone. The hooks find their host through a thread-local
 * pointer set on every entry into the glue: a host's copy is only ever driven from the thread
 * that is running its world.
 *
 * Only the raw API is used, from one thread; tcpip_init() is never called, so lwIP starts no
 * thread. None of lwIP's functions are called directly: every call goes through the host's
 * table of pointers resolved with dlsym from its own copy.
 */

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lwip/opt.h"
#include "lwip/err.h"
#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/raw.h"
#include "lwip/tcp.h"
#include "lwip/tcpip.h"
#include "lwip/udp.h"
#include "lwip/prot/ethernet.h"
#include "netif/etharp.h"

#if !LWIP_IPV4 || !LWIP_TCP || !LWIP_UDP || !LWIP_RAW || !LWIP_ARP || NO_SYS
#error "wirelab needs an lwIP built with IPv4, TCP, UDP, raw PCBs and ARP, and NO_SYS=0"
#endif

typedef void (*wl_emit_fn)(void *ctx, const uint8_t *frame, size_t len);

/* The lwIP functions the glue calls, resolved from one host's copy. */
struct wl_fns {
  void (*lwip_init)(void);
  struct netif *(*netif_add)(struct netif *, const ip4_addr_t *, const ip4_addr_t *,
                             const ip4_addr_t *, void *, netif_init_fn, netif_input_fn);
  void (*netif_set_default)(struct netif *);
  void (*netif_set_up)(struct netif *);
  void (*netif_set_link_up)(struct netif *);
#if LWIP_IPV6
  void (*netif_ip6_addr_set)(struct netif *, s8_t, const ip6_addr_t *);
  void (*netif_ip6_addr_set_state)(struct netif *, s8_t, u8_t);
  err_t (*ethip6_output)(struct netif *, struct pbuf *, const ip6_addr_t *);
#endif
  err_t (*ethernet_input)(struct pbuf *, struct netif *);
  err_t (*etharp_output)(struct netif *, struct pbuf *, const ip4_addr_t *);
  void (*sys_check_timeouts)(void);
  u32_t (*sys_timeouts_sleeptime)(void);
  struct pbuf *(*pbuf_alloc)(pbuf_layer, u16_t, pbuf_type);
  u8_t (*pbuf_free)(struct pbuf *);
  struct pbuf *(*pbuf_free_header)(struct pbuf *, u16_t);
  err_t (*pbuf_take)(struct pbuf *, const void *, u16_t);
  u16_t (*pbuf_copy_partial)(const struct pbuf *, void *, u16_t, u16_t);
  void (*pbuf_cat)(struct pbuf *, struct pbuf *);
  struct tcp_pcb *(*tcp_new_ip_type)(u8_t);
  err_t (*tcp_bind)(struct tcp_pcb *, const ip_addr_t *, u16_t);
  struct tcp_pcb *(*tcp_listen_with_backlog)(struct tcp_pcb *, u8_t);
  void (*tcp_accept)(struct tcp_pcb *, tcp_accept_fn);
  void (*tcp_arg)(struct tcp_pcb *, void *);
  void (*tcp_recv)(struct tcp_pcb *, tcp_recv_fn);
  void (*tcp_sent)(struct tcp_pcb *, tcp_sent_fn);
  void (*tcp_err)(struct tcp_pcb *, tcp_err_fn);
  err_t (*tcp_connect)(struct tcp_pcb *, const ip_addr_t *, u16_t, tcp_connected_fn);
  err_t (*tcp_write)(struct tcp_pcb *, const void *, u16_t, u8_t);
  err_t (*tcp_output)(struct tcp_pcb *);
  void (*tcp_recved)(struct tcp_pcb *, u16_t);
  err_t (*tcp_close)(struct tcp_pcb *);
  void (*tcp_abort)(struct tcp_pcb *);
  err_t (*tcp_shutdown)(struct tcp_pcb *, int, int);
  struct udp_pcb *(*udp_new_ip_type)(u8_t);
  err_t (*udp_bind)(struct udp_pcb *, const ip_addr_t *, u16_t);
  err_t (*udp_sendto)(struct udp_pcb *, struct pbuf *, const ip_addr_t *, u16_t);
  void (*udp_recv)(struct udp_pcb *, udp_recv_fn, void *);
  void (*udp_remove)(struct udp_pcb *);
  struct raw_pcb *(*raw_new_ip_type)(u8_t, u8_t);
  void (*raw_recv)(struct raw_pcb *, raw_recv_fn, void *);
  err_t (*raw_sendto)(struct raw_pcb *, struct pbuf *, const ip_addr_t *);
  void (*raw_remove)(struct raw_pcb *);
};

struct wl_callback {
  tcpip_callback_fn fn;
  void *ctx;
};

struct wl_tcp;

/* One simulated host: its private lwIP copy and everything the hooks need. */
struct wl_host {
  void *dl;
  /* The memfd holding this host's copy. It stays open while the copy is loaded: glibc finds
   * already-loaded objects by the name passed to dlopen, so two live copies must never share
   * a /proc/self/fd/N path. */
  int fd;
  struct wl_fns f;
  struct netif netif;
  char name[64];
  uint8_t mac[6];
  u16_t mtu;
  u32_t now_ms;
  uint64_t rand_state;
  uint64_t iss_state;
  /* Callbacks lwIP queued through tcpip_try_callback (loopback delivery), run by wl_poll. */
  struct wl_callback *callbacks;
  size_t callbacks_len, callbacks_cap;
  /* Where transmitted frames go: the caller's queue. */
  wl_emit_fn emit;
  void *tx_ctx;
  uint8_t *scratch;
  size_t scratch_cap;
  /* Bumped whenever something an application may look at changes. */
  uint64_t events;
  uint32_t dgram_packets;
  uint32_t dgram_bytes;
  /* Every TCP wrapper (connections and listeners) the application holds. */
  struct wl_tcp *tcps;
};

/* Mirrors `HostConfig` in lwip.rs. */
struct wl_host_config {
  const uint8_t *lib;
  size_t lib_len;
  const char *name;
  uint8_t mac[6];
  uint8_t has_ipv4;
  uint8_t has_ipv6;
  uint8_t ipv4[4];
  uint8_t ipv4_mask[4];
  uint8_t ipv4_gateway[4];
  uint8_t ipv6[16];
  uint16_t mtu;
  uint64_t seed;
  uint32_t dgram_packets;
  uint32_t dgram_bytes;
  wl_emit_fn emit;
  void *tx_ctx;
};

static __thread struct wl_host *wl_current;

/* ---- hooks patched into each copy ---- */

static u32_t wl_hook_sys_now(void) {
  struct wl_host *h = wl_current;
  return h != NULL ? h->now_ms : 0;
}

static uint64_t wl_splitmix(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int wl_hook_rand(void) {
  struct wl_host *h = wl_current;
  if (h == NULL) {
    return 0;
  }
  return (int)(wl_splitmix(&h->rand_state) >> 33);
}

static u32_t wl_hook_tcp_next_iss(struct tcp_pcb *pcb) {
  (void)pcb;
  struct wl_host *h = wl_current;
  if (h == NULL) {
    return 0;
  }
  return (u32_t)(wl_splitmix(&h->iss_state) >> 32);
}

static err_t wl_hook_tcpip_try_callback(tcpip_callback_fn fn, void *ctx) {
  struct wl_host *h = wl_current;
  if (h == NULL) {
    return ERR_MEM;
  }
  if (h->callbacks_len == h->callbacks_cap) {
    size_t cap = h->callbacks_cap ? h->callbacks_cap * 2 : 8;
    struct wl_callback *grown = realloc(h->callbacks, cap * sizeof(*grown));
    if (grown == NULL) {
      return ERR_MEM;
    }
    h->callbacks = grown;
    h->callbacks_cap = cap;
  }
  h->callbacks[h->callbacks_len].fn = fn;
  h->callbacks[h->callbacks_len].ctx = ctx;
  h->callbacks_len++;
  return ERR_OK;
}

/* One thread drives a copy at a time, so lwIP's critical sections need no lock. */
static sys_prot_t wl_hook_protect(void) { return 0; }
static void wl_hook_unprotect(sys_prot_t level) { (void)level; }

static void wl_hook_abort(void) {
  struct wl_host *h = wl_current;
  fprintf(stderr, "wirelab: the lwIP copy of host `%s` called abort() (an lwIP assertion failed; lwIP printed it on standard output)\n",
          h != NULL ? h->name : "?");
  fflush(stderr);
  abort();
}

/* ---- loading ---- */

static void wl_error(char *err, size_t errlen, const char *what, const char *detail) {
  if (err != NULL && errlen > 0) {
    snprintf(err, errlen, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
  }
}

struct wl_hook {
  const char *name;
  void *fn;
  int required;
  int patched;
};

/* Rewrites the GOT slots of the named symbols in one loaded copy. */
static int wl_patch_got(void *dl, struct wl_hook *hooks, size_t nhooks, char *err, size_t errlen) {
  struct link_map *lm = NULL;
  if (dlinfo(dl, RTLD_DI_LINKMAP, &lm) != 0 || lm == NULL) {
    wl_error(err, errlen, "dlinfo failed", dlerror());
    return -1;
  }
  ElfW(Addr) base = lm->l_addr;
  const ElfW(Sym) *symtab = NULL;
  const char *strtab = NULL;
  const ElfW(Rela) *jmprel = NULL, *rela = NULL;
  size_t jmprel_size = 0, rela_size = 0;
  /* glibc rebases these d_ptr values in place on most targets; others leave them relative. */
#define WL_ADDR(v) ((ElfW(Addr))(v) < base ? base + (ElfW(Addr))(v) : (ElfW(Addr))(v))
  for (const ElfW(Dyn) *d = lm->l_ld; d->d_tag != DT_NULL; d++) {
    switch (d->d_tag) {
      case DT_SYMTAB: symtab = (const ElfW(Sym) *)WL_ADDR(d->d_un.d_ptr); break;
      case DT_STRTAB: strtab = (const char *)WL_ADDR(d->d_un.d_ptr); break;
      case DT_JMPREL: jmprel = (const ElfW(Rela) *)WL_ADDR(d->d_un.d_ptr); break;
      case DT_PLTRELSZ: jmprel_size = d->d_un.d_val; break;
      case DT_RELA: rela = (const ElfW(Rela) *)WL_ADDR(d->d_un.d_ptr); break;
      case DT_RELASZ: rela_size = d->d_un.d_val; break;
      default: break;
    }
  }
#undef WL_ADDR
  if (symtab == NULL || strtab == NULL) {
    wl_error(err, errlen, "liblwip has no dynamic symbol table", NULL);
    return -1;
  }
  long page = sysconf(_SC_PAGESIZE);
  const ElfW(Rela) *tables[2] = {jmprel, rela};
  size_t sizes[2] = {jmprel_size, rela_size};
  for (int t = 0; t < 2; t++) {
    if (tables[t] == NULL) {
      continue;
    }
    for (size_t i = 0; i < sizes[t] / sizeof(ElfW(Rela)); i++) {
      const ElfW(Rela) *r = &tables[t][i];
      unsigned long type = ELF64_R_TYPE(r->r_info);
      if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) {
        continue;
      }
      const char *name = strtab + symtab[ELF64_R_SYM(r->r_info)].st_name;
      for (size_t k = 0; k < nhooks; k++) {
        if (strcmp(name, hooks[k].name) != 0) {
          continue;
        }
        void **slot = (void **)(base + r->r_offset);
        uintptr_t start = (uintptr_t)slot & ~(uintptr_t)(page - 1);
        /* The GOT sits in the RELRO segment: read-only once relocated. */
        if (mprotect((void *)start, (size_t)page, PROT_READ | PROT_WRITE) != 0) {
          wl_error(err, errlen, "mprotect of lwIP's GOT failed", NULL);
          return -1;
        }
        *slot = hooks[k].fn;
        mprotect((void *)start, (size_t)page, PROT_READ);
        hooks[k].patched++;
      }
    }
  }
  for (size_t k = 0; k < nhooks; k++) {
    if (hooks[k].required && hooks[k].patched == 0) {
      wl_error(err, errlen, "liblwip does not call this function through its PLT, so it cannot be supplied", hooks[k].name);
      return -1;
    }
  }
  return 0;
}

static err_t wl_linkoutput(struct netif *netif, struct pbuf *p) {
  struct wl_host *h = (struct wl_host *)netif->state;
  if (h->tx_ctx == NULL) {
    return ERR_OK;
  }
  if (p->next == NULL && p->len == p->tot_len) {
    h->emit(h->tx_ctx, (const uint8_t *)p->payload, p->len);
    return ERR_OK;
  }
  if (h->scratch_cap < p->tot_len) {
    uint8_t *grown = realloc(h->scratch, p->tot_len);
    if (grown == NULL) {
      return ERR_MEM;
    }
    h->scratch = grown;
    h->scratch_cap = p->tot_len;
  }
  u16_t n = h->f.pbuf_copy_partial(p, h->scratch, p->tot_len, 0);
  h->emit(h->tx_ctx, h->scratch, n);
  return ERR_OK;
}

static err_t wl_netif_init(struct netif *netif) {
  struct wl_host *h = (struct wl_host *)netif->state;
  netif->name[0] = 'w';
  netif->name[1] = 'l';
  netif->output = h->f.etharp_output;
#if LWIP_IPV6
  netif->output_ip6 = h->f.ethip6_output;
#endif
  netif->linkoutput = wl_linkoutput;
  netif->mtu = h->mtu;
  netif->hwaddr_len = ETH_HWADDR_LEN;
  memcpy(netif->hwaddr, h->mac, ETH_HWADDR_LEN);
  netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
#if LWIP_IGMP
  netif->flags |= NETIF_FLAG_IGMP;
#endif
#if LWIP_IPV6 && LWIP_IPV6_MLD
  netif->flags |= NETIF_FLAG_MLD6;
#endif
  return ERR_OK;
}

#define WL_RESOLVE(field)                                                   \
  do {                                                                      \
    *(void **)(&h->f.field) = dlsym(h->dl, #field);                         \
    if (h->f.field == NULL) {                                               \
      wl_error(err, errlen, "liblwip lacks a function wirelab needs", #field); \
      goto fail;                                                            \
    }                                                                       \
  } while (0)

int wl_glue_has_ipv6(void) { return LWIP_IPV6; }

struct wl_host *wl_host_new(const struct wl_host_config *cfg, char *err, size_t errlen) {
  struct wl_host *h = calloc(1, sizeof(*h));
  if (h == NULL) {
    wl_error(err, errlen, "out of memory", NULL);
    return NULL;
  }
  snprintf(h->name, sizeof(h->name), "%s", cfg->name);
  h->rand_state = cfg->seed ^ 0x6c77495052616e64ULL;   /* "lwIPRand" */
  h->iss_state = cfg->seed ^ 0x6c7749504973734eULL;    /* "lwIPIssN" */
  h->emit = cfg->emit;
  h->tx_ctx = cfg->tx_ctx;
  h->dgram_packets = cfg->dgram_packets ? cfg->dgram_packets : 1;
  h->dgram_bytes = cfg->dgram_bytes;

  int fd = memfd_create("wirelab-liblwip", MFD_CLOEXEC);
  if (fd < 0 && errno == EMFILE) {
    /* One descriptor per live lwIP host: a thousand hosts may need the hard limit. */
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
      lim.rlim_cur = lim.rlim_max;
      setrlimit(RLIMIT_NOFILE, &lim);
      fd = memfd_create("wirelab-liblwip", MFD_CLOEXEC);
    }
  }
  if (fd < 0) {
    wl_error(err, errlen, "memfd_create failed", NULL);
    free(h);
    return NULL;
  }
  size_t done = 0;
  while (done < cfg->lib_len) {
    ssize_t n = write(fd, cfg->lib + done, cfg->lib_len - done);
    if (n <= 0) {
      wl_error(err, errlen, "writing the private copy of liblwip failed", NULL);
      close(fd);
      free(h);
      return NULL;
    }
    done += (size_t)n;
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  h->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  h->fd = fd;
  if (h->dl == NULL) {
    wl_error(err, errlen, "dlopen of the private copy of liblwip failed", dlerror());
    close(fd);
    free(h);
    return NULL;
  }
  struct wl_hook hooks[] = {
      {"sys_now", (void *)wl_hook_sys_now, 1, 0},
      {"rand", (void *)wl_hook_rand, 1, 0},
      {"tcp_next_iss", (void *)wl_hook_tcp_next_iss, 1, 0},
      {"tcpip_try_callback", (void *)wl_hook_tcpip_try_callback, 1, 0},
      {"sys_arch_protect", (void *)wl_hook_protect, 0, 0},
      {"sys_arch_unprotect", (void *)wl_hook_unprotect, 0, 0},
      {"abort", (void *)wl_hook_abort, 0, 0},
  };
  if (wl_patch_got(h->dl, hooks, sizeof(hooks) / sizeof(hooks[0]), err, errlen) != 0) {
    goto fail;
  }
  WL_RESOLVE(lwip_init);
  WL_RESOLVE(netif_add);
  WL_RESOLVE(netif_set_default);
  WL_RESOLVE(netif_set_up);
  WL_RESOLVE(netif_set_link_up);
#if LWIP_IPV6
  WL_RESOLVE(netif_ip6_addr_set);
  WL_RESOLVE(netif_ip6_addr_set_state);
  WL_RESOLVE(ethip6_output);
#endif
  WL_RESOLVE(ethernet_input);
  WL_RESOLVE(etharp_output);
  WL_RESOLVE(sys_check_timeouts);
  WL_RESOLVE(sys_timeouts_sleeptime);
  WL_RESOLVE(pbuf_alloc);
  WL_RESOLVE(pbuf_free);
  WL_RESOLVE(pbuf_free_header);
  WL_RESOLVE(pbuf_take);
  WL_RESOLVE(pbuf_copy_partial);
  WL_RESOLVE(pbuf_cat);
  WL_RESOLVE(tcp_new_ip_type);
  WL_RESOLVE(tcp_bind);
  WL_RESOLVE(tcp_listen_with_backlog);
  WL_RESOLVE(tcp_accept);
  WL_RESOLVE(tcp_arg);
  WL_RESOLVE(tcp_recv);
  WL_RESOLVE(tcp_sent);
  WL_RESOLVE(tcp_err);
  WL_RESOLVE(tcp_connect);
  WL_RESOLVE(tcp_write);
  WL_RESOLVE(tcp_output);
  WL_RESOLVE(tcp_recved);
  WL_RESOLVE(tcp_close);
  WL_RESOLVE(tcp_abort);
  WL_RESOLVE(tcp_shutdown);
  WL_RESOLVE(udp_new_ip_type);
  WL_RESOLVE(udp_bind);
  WL_RESOLVE(udp_sendto);
  WL_RESOLVE(udp_recv);
  WL_RESOLVE(udp_remove);
  WL_RESOLVE(raw_new_ip_type);
  WL_RESOLVE(raw_recv);
  WL_RESOLVE(raw_sendto);
  WL_RESOLVE(raw_remove);

  wl_current = h;
  h->now_ms = 0;
  h->f.lwip_init();

  ip4_addr_t addr, mask, gw;
  memset(&addr, 0, sizeof(addr));
  memset(&mask, 0, sizeof(mask));
  memset(&gw, 0, sizeof(gw));
  if (cfg->has_ipv4) {
    memcpy(&addr.addr, cfg->ipv4, 4);
    memcpy(&mask.addr, cfg->ipv4_mask, 4);
    memcpy(&gw.addr, cfg->ipv4_gateway, 4);
  }
  h->mtu = cfg->mtu;
  memcpy(h->mac, cfg->mac, sizeof(h->mac));
  if (h->f.netif_add(&h->netif, &addr, &mask, &gw, h, wl_netif_init, h->f.ethernet_input) == NULL) {
    wl_error(err, errlen, "netif_add failed", NULL);
    goto fail;
  }
#if LWIP_IPV6 && LWIP_ND6_ALLOW_RA_UPDATES
  h->netif.mtu6 = cfg->mtu;
#endif
  h->f.netif_set_default(&h->netif);
#if LWIP_IPV6
  if (cfg->has_ipv6) {
    ip6_addr_t a6;
    memset(&a6, 0, sizeof(a6));
    memcpy(a6.addr, cfg->ipv6, 16);
    ip6_addr_assign_zone(&a6, IP6_UNICAST, &h->netif);
    h->f.netif_ip6_addr_set(&h->netif, 0, &a6);
    /* Configured addresses are used at once, as smoltcp does: no duplicate detection. */
    h->f.netif_ip6_addr_set_state(&h->netif, 0, IP6_ADDR_PREFERRED);
  }
#endif
  h->f.netif_set_up(&h->netif);
  h->f.netif_set_link_up(&h->netif);
#if LWIP_IPV6
  /* No router in a simulated segment answers; do not solicit one. */
  h->netif.rs_count = 0;
#endif
  return h;

fail:
  dlclose(h->dl);
  close(h->fd);
  free(h);
  return NULL;
}

/* ---- TCP ---- */

enum { WL_END_NONE = 0, WL_END_REFUSED = 1, WL_END_RESET = 2, WL_END_TIMED_OUT = 3 };

struct wl_tcp {
  struct wl_host *h;
  struct tcp_pcb *pcb; /* NULL once lwIP has freed it or it has been handed back to lwIP */
  struct wl_tcp *next, *prev;
  int listener;
  struct wl_tcp **accepted; /* listener: established connections not yet taken */
  size_t accepted_len, accepted_cap;
  struct pbuf *rx;
  int fin;
  int connected;
  int aborted;
  int end;
  int last_state;
  int needs_output;
  int time_wait; /* detached in TIME-WAIT at time_wait_since_ms */
  u32_t time_wait_since_ms;
  u16_t local_port;
};

static struct wl_tcp *wl_tcp_alloc(struct wl_host *h, struct tcp_pcb *pcb) {
  struct wl_tcp *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    return NULL;
  }
  c->h = h;
  c->pcb = pcb;
  c->last_state = pcb->state;
  c->local_port = pcb->local_port;
  c->next = h->tcps;
  if (h->tcps) {
    h->tcps->prev = c;
  }
  h->tcps = c;
  return c;
}

static void wl_tcp_unlink_free(struct wl_tcp *c) {
  struct wl_host *h = c->h;
  if (c->prev) {
    c->prev->next = c->next;
  } else {
    h->tcps = c->next;
  }
  if (c->next) {
    c->next->prev = c->prev;
  }
  if (c->rx) {
    h->f.pbuf_free(c->rx);
  }
  free(c->accepted);
  free(c);
}

static err_t wl_tcp_recv_cb(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  struct wl_tcp *c = arg;
  (void)err;
  if (c == NULL) {
    return ERR_ARG;
  }
  c->h->events++;
  if (p == NULL) {
    c->fin = 1;
    return ERR_OK;
  }
  (void)pcb;
  if (c->rx == NULL) {
    c->rx = p;
  } else {
    c->h->f.pbuf_cat(c->rx, p);
  }
  return ERR_OK;
}

static err_t wl_tcp_sent_cb(void *arg, struct tcp_pcb *pcb, u16_t len) {
  struct wl_tcp *c = arg;
  (void)pcb;
  (void)len;
  if (c != NULL) {
    c->h->events++;
  }
  return ERR_OK;
}

static void wl_tcp_err_cb(void *arg, err_t err) {
  struct wl_tcp *c = arg;
  if (c == NULL) {
    return;
  }
  /* lwIP has freed the PCB already. */
  c->pcb = NULL;
  c->needs_output = 0;
  c->h->events++;
  if (c->aborted) {
    return;
  }
  if (err == ERR_CLSD) {
    c->end = WL_END_NONE;
  } else if (err == ERR_RST) {
    c->end = c->connected ? WL_END_RESET : WL_END_REFUSED;
  } else {
    c->end = WL_END_TIMED_OUT;
  }
}

static err_t wl_tcp_connected_cb(void *arg, struct tcp_pcb *pcb, err_t err) {
  struct wl_tcp *c = arg;
  (void)pcb;
  (void)err;
  if (c != NULL) {
    c->connected = 1;
    c->h->events++;
  }
  return ERR_OK;
}

static void wl_tcp_set_callbacks(struct wl_host *h, struct wl_tcp *c) {
  h->f.tcp_arg(c->pcb, c);
  h->f.tcp_recv(c->pcb, wl_tcp_recv_cb);
  h->f.tcp_sent(c->pcb, wl_tcp_sent_cb);
  h->f.tcp_err(c->pcb, wl_tcp_err_cb);
}

static err_t wl_tcp_accept_cb(void *arg, struct tcp_pcb *newpcb, err_t err) {
  struct wl_tcp *l = arg;
  struct wl_host *h = wl_current;
  if (newpcb == NULL || err != ERR_OK) {
    return ERR_VAL;
  }
  if (l == NULL) {
    h->f.tcp_abort(newpcb);
    return ERR_ABRT;
  }
  if (l->accepted_len == l->accepted_cap) {
    size_t cap = l->accepted_cap ? l->accepted_cap * 2 : 4;
    struct wl_tcp **grown = realloc(l->accepted, cap * sizeof(*grown));
    if (grown == NULL) {
      h->f.tcp_abort(newpcb);
      return ERR_ABRT;
    }
    l->accepted = grown;
    l->accepted_cap = cap;
  }
  struct wl_tcp *c = wl_tcp_alloc(h, newpcb);
  if (c == NULL) {
    h->f.tcp_abort(newpcb);
    return ERR_ABRT;
  }
  c->connected = 1;
  wl_tcp_set_callbacks(h, c);
  l->accepted[l->accepted_len++] = c;
  h->events++;
  return ERR_OK;
}

static void wl_any_addr(ip_addr_t *a, u8_t type) {
  memset(a, 0, sizeof(*a));
  IP_SET_TYPE_VAL(*a, type);
}

static void wl_make_addr(struct wl_host *h, ip_addr_t *a, const uint8_t *bytes, int v6) {
  memset(a, 0, sizeof(*a));
#if LWIP_IPV6
  if (v6) {
    memcpy(ip_2_ip6(a)->addr, bytes, 16);
    IP_SET_TYPE_VAL(*a, IPADDR_TYPE_V6);
    ip6_addr_assign_zone(ip_2_ip6(a), IP6_UNKNOWN, &h->netif);
    return;
  }
#else
  (void)h;
  (void)v6;
#endif
  memcpy(&ip_2_ip4(a)->addr, bytes, 4);
  IP_SET_TYPE_VAL(*a, IPADDR_TYPE_V4);
}

static void wl_read_addr(const ip_addr_t *a, uint8_t *out, uint8_t *v6) {
  memset(out, 0, 16);
#if LWIP_IPV6
  if (IP_IS_V6(a)) {
    memcpy(out, ip_2_ip6(a)->addr, 16);
    *v6 = 1;
    return;
  }
#endif
  memcpy(out, &ip_2_ip4(a)->addr, 4);
  *v6 = 0;
}

/* Error codes the Rust side maps: 0 ok, negative lwIP err_t values otherwise. */

struct wl_tcp *wl_tcp_listen(struct wl_host *h, uint16_t port, int backlog, int *err) {
  wl_current = h;
  struct tcp_pcb *pcb = h->f.tcp_new_ip_type(IPADDR_TYPE_ANY);
  if (pcb == NULL) {
    *err = ERR_MEM;
    return NULL;
  }
  ip_addr_t any;
  wl_any_addr(&any, IPADDR_TYPE_ANY);
  err_t e = h->f.tcp_bind(pcb, &any, port);
  if (e != ERR_OK) {
    h->f.tcp_close(pcb);
    *err = e;
    return NULL;
  }
  u8_t b = backlog > 255 ? 255 : (backlog < 1 ? 1 : (u8_t)backlog);
  struct tcp_pcb *lpcb = h->f.tcp_listen_with_backlog(pcb, b);
  if (lpcb == NULL) {
    h->f.tcp_close(pcb);
    *err = ERR_MEM;
    return NULL;
  }
  struct wl_tcp *l = wl_tcp_alloc(h, lpcb);
  if (l == NULL) {
    h->f.tcp_close(lpcb);
    *err = ERR_MEM;
    return NULL;
  }
  l->listener = 1;
  h->f.tcp_arg(lpcb, l);
  h->f.tcp_accept(lpcb, wl_tcp_accept_cb);
  *err = ERR_OK;
  return l;
}

struct wl_tcp *wl_tcp_accept(struct wl_host *h, struct wl_tcp *l) {
  (void)h;
  if (!l->listener || l->accepted_len == 0) {
    return NULL;
  }
  struct wl_tcp *c = l->accepted[0];
  memmove(l->accepted, l->accepted + 1, (l->accepted_len - 1) * sizeof(*l->accepted));
  l->accepted_len--;
  return c;
}

struct wl_tcp *wl_tcp_connect(struct wl_host *h, const uint8_t *addr, int v6, uint16_t port, int *err) {
  wl_current = h;
  ip_addr_t dst;
  wl_make_addr(h, &dst, addr, v6);
  struct tcp_pcb *pcb = h->f.tcp_new_ip_type(v6 ? IPADDR_TYPE_V6 : IPADDR_TYPE_V4);
  if (pcb == NULL) {
    *err = ERR_MEM;
    return NULL;
  }
  struct wl_tcp *c = wl_tcp_alloc(h, pcb);
  if (c == NULL) {
    h->f.tcp_close(pcb);
    *err = ERR_MEM;
    return NULL;
  }
  wl_tcp_set_callbacks(h, c);
  err_t e = h->f.tcp_connect(pcb, &dst, port, wl_tcp_connected_cb);
  if (e != ERR_OK) {
    h->f.tcp_arg(pcb, NULL);
    h->f.tcp_abort(pcb);
    c->pcb = NULL;
    wl_tcp_unlink_free(c);
    *err = e;
    return NULL;
  }
  c->last_state = pcb->state;
  c->local_port = pcb->local_port;
  *err = ERR_OK;
  return c;
}

/* Bytes taken (0 when lwIP's send buffer or segment queue is full), or -1 without a PCB. */
long wl_tcp_write(struct wl_host *h, struct wl_tcp *c, const uint8_t *data, size_t len) {
  wl_current = h;
  if (c->pcb == NULL) {
    return -1;
  }
  size_t room = tcp_sndbuf(c->pcb);
  if (len > room) {
    len = room;
  }
  if (len > 0xffff) {
    len = 0xffff;
  }
  if (len == 0 || tcp_sndqueuelen(c->pcb) >= TCP_SND_QUEUELEN) {
    return 0;
  }
  err_t e = h->f.tcp_write(c->pcb, data, (u16_t)len, TCP_WRITE_FLAG_COPY);
  if (e == ERR_MEM) {
    return 0;
  }
  if (e != ERR_OK) {
    return -1;
  }
  c->needs_output = 1;
  return (long)len;
}

/* The next received bytes without taking them: 1 with data, 0 when nothing is queued yet,
 * -1 when the peer's FIN came and everything before it was read, -2 when the connection
 * ended without a FIN. */
int wl_tcp_peek(struct wl_host *h, struct wl_tcp *c, const uint8_t **data, size_t *len) {
  (void)h;
  struct pbuf *q = c->rx;
  while (q != NULL && q->len == 0) {
    q = q->next;
  }
  if (q != NULL) {
    *data = (const uint8_t *)q->payload;
    *len = q->len;
    return 1;
  }
  if (c->fin) {
    return -1;
  }
  if (c->pcb == NULL && !c->time_wait) {
    return -2;
  }
  return 0;
}

void wl_tcp_consume(struct wl_host *h, struct wl_tcp *c, size_t n) {
  wl_current = h;
  while (n > 0 && c->rx != NULL) {
    u16_t step = n > 0xffff ? 0xffff : (u16_t)n;
    /* Zero-length pbufs in front go too. */
    c->rx = h->f.pbuf_free_header(c->rx, step);
    if (c->pcb != NULL) {
      h->f.tcp_recved(c->pcb, step);
    }
    n -= step;
  }
  if (c->rx != NULL && c->rx->tot_len == 0) {
    h->f.pbuf_free(c->rx);
    c->rx = NULL;
  }
}

int wl_tcp_shutdown(struct wl_host *h, struct wl_tcp *c) {
  wl_current = h;
  if (c->pcb == NULL) {
    return ERR_CONN;
  }
  err_t e = h->f.tcp_shutdown(c->pcb, 0, 1);
  c->needs_output = 1;
  return e;
}

void wl_tcp_abort(struct wl_host *h, struct wl_tcp *c) {
  wl_current = h;
  c->aborted = 1;
  if (c->pcb != NULL) {
    /* Calls our err callback, which forgets the PCB. */
    h->f.tcp_abort(c->pcb);
    c->pcb = NULL;
  }
  c->time_wait = 0;
}

static const u32_t wl_time_wait_ms = 2 * 60000; /* 2 * TCP_MSL */

int wl_tcp_state(struct wl_host *h, const struct wl_tcp *c) {
  if (c->pcb != NULL) {
    return c->pcb->state;
  }
  if (c->time_wait && (u32_t)(h->now_ms - c->time_wait_since_ms) < wl_time_wait_ms) {
    return TIME_WAIT;
  }
  return CLOSED;
}

int wl_tcp_end(const struct wl_tcp *c) { return c->end; }

size_t wl_tcp_send_queue(const struct wl_tcp *c) {
  if (c->pcb == NULL) {
    return 0;
  }
  return (size_t)(TCP_SND_BUF - c->pcb->snd_buf);
}

/* The connection's two ends; 0 once the pcb is gone (the connection is closed). */
int wl_tcp_endpoints(const struct wl_tcp *c, uint8_t *local, uint8_t *local_v6,
                     uint16_t *local_port, uint8_t *remote, uint8_t *remote_v6,
                     uint16_t *remote_port) {
  if (c->pcb == NULL) {
    return 0;
  }
  wl_read_addr(&c->pcb->local_ip, local, local_v6);
  *local_port = c->pcb->local_port;
  wl_read_addr(&c->pcb->remote_ip, remote, remote_v6);
  *remote_port = c->pcb->remote_port;
  return 1;
}

void wl_tcp_set_nagle(struct wl_tcp *c, int enabled) {
  if (c->pcb == NULL) {
    return;
  }
  if (enabled) {
    tcp_nagle_enable(c->pcb);
  } else {
    tcp_nagle_disable(c->pcb);
  }
}

void wl_tcp_set_keepalive(struct wl_tcp *c, uint32_t interval_ms) {
  if (c->pcb == NULL) {
    return;
  }
#if LWIP_TCP_KEEPALIVE
  if (interval_ms == 0) {
    ip_reset_option(c->pcb, SOF_KEEPALIVE);
  } else {
    ip_set_option(c->pcb, SOF_KEEPALIVE);
    c->pcb->keep_idle = interval_ms;
    c->pcb->keep_intvl = interval_ms;
  }
#else
  (void)interval_ms;
#endif
}

/* The application lets go of a connection or listener: lwIP finishes closing it alone. */
void wl_tcp_release(struct wl_host *h, struct wl_tcp *c) {
  wl_current = h;
  if (c->listener) {
    for (size_t i = 0; i < c->accepted_len; i++) {
      struct wl_tcp *a = c->accepted[i];
      if (a->pcb != NULL) {
        h->f.tcp_arg(a->pcb, NULL);
        h->f.tcp_abort(a->pcb);
        a->pcb = NULL;
      }
      wl_tcp_unlink_free(a);
    }
    c->accepted_len = 0;
    if (c->pcb != NULL) {
      h->f.tcp_arg(c->pcb, NULL);
      h->f.tcp_accept(c->pcb, NULL);
      h->f.tcp_close(c->pcb);
    }
  } else if (c->pcb != NULL) {
    struct tcp_pcb *pcb = c->pcb;
    h->f.tcp_arg(pcb, NULL);
    h->f.tcp_recv(pcb, NULL);
    h->f.tcp_sent(pcb, NULL);
    h->f.tcp_err(pcb, NULL);
    if (h->f.tcp_close(pcb) != ERR_OK) {
      h->f.tcp_abort(pcb);
    }
  }
  c->pcb = NULL;
  wl_tcp_unlink_free(c);
}

/* Sends what connections queued, notes state changes, and lets go of PCBs in TIME-WAIT:
 * lwIP frees those on its own, without telling anyone. */
static void wl_tcp_sweep(struct wl_host *h) {
  for (struct wl_tcp *c = h->tcps; c != NULL; c = c->next) {
    if (c->listener || c->pcb == NULL) {
      continue;
    }
    if (c->needs_output) {
      c->needs_output = 0;
      h->f.tcp_output(c->pcb);
      if (c->pcb == NULL) {
        continue;
      }
    }
    int state = c->pcb->state;
    if (state != c->last_state) {
      c->last_state = state;
      h->events++;
    }
    if (state == TIME_WAIT) {
      h->f.tcp_arg(c->pcb, NULL);
      c->pcb = NULL;
      c->time_wait = 1;
      c->time_wait_since_ms = h->now_ms;
      c->fin = 1;
    }
  }
}

/* ---- UDP ---- */

struct wl_dgram {
  struct pbuf *p;
  ip_addr_t addr;
  u16_t port;
};

struct wl_udp {
  struct wl_host *h;
  struct udp_pcb *pcb;
  struct wl_dgram *q;
  uint32_t cap, head, len;
  size_t bytes;
};

static void wl_udp_recv_cb(void *arg, struct udp_pcb *pcb, struct pbuf *p, const ip_addr_t *addr, u16_t port) {
  struct wl_udp *u = arg;
  struct wl_host *h = u->h;
  (void)pcb;
  if (u->len == u->cap || u->bytes + p->tot_len > h->dgram_bytes) {
    h->f.pbuf_free(p);
    return;
  }
  struct wl_dgram *d = &u->q[(u->head + u->len) % u->cap];
  d->p = p;
  ip_addr_copy(d->addr, *addr);
  d->port = port;
  u->len++;
  u->bytes += p->tot_len;
  h->events++;
}

struct wl_udp *wl_udp_bind(struct wl_host *h, uint16_t port, int *err) {
  wl_current = h;
  struct wl_udp *u = calloc(1, sizeof(*u));
  if (u == NULL) {
    *err = ERR_MEM;
    return NULL;
  }
  u->h = h;
  u->cap = h->dgram_packets;
  u->q = calloc(u->cap, sizeof(*u->q));
  u->pcb = h->f.udp_new_ip_type(IPADDR_TYPE_ANY);
  if (u->q == NULL || u->pcb == NULL) {
    if (u->pcb) {
      h->f.udp_remove(u->pcb);
    }
    free(u->q);
    free(u);
    *err = ERR_MEM;
    return NULL;
  }
  ip_addr_t any;
  wl_any_addr(&any, IPADDR_TYPE_ANY);
  err_t e = h->f.udp_bind(u->pcb, &any, port);
  if (e != ERR_OK) {
    h->f.udp_remove(u->pcb);
    free(u->q);
    free(u);
    *err = e;
    return NULL;
  }
  h->f.udp_recv(u->pcb, wl_udp_recv_cb, u);
  *err = ERR_OK;
  return u;
}

uint16_t wl_udp_local_port(const struct wl_udp *u) { return u->pcb->local_port; }

int wl_udp_sendto(struct wl_host *h, struct wl_udp *u, const uint8_t *addr, int v6, uint16_t port,
                  const uint8_t *data, size_t len) {
  wl_current = h;
  if (len > 0xffff - 8) {
    return ERR_VAL;
  }
  struct pbuf *p = h->f.pbuf_alloc(PBUF_TRANSPORT, (u16_t)len, PBUF_RAM);
  if (p == NULL) {
    return ERR_MEM;
  }
  if (len > 0) {
    h->f.pbuf_take(p, data, (u16_t)len);
  }
  ip_addr_t dst;
  wl_make_addr(h, &dst, addr, v6);
  err_t e = h->f.udp_sendto(u->pcb, p, &dst, port);
  h->f.pbuf_free(p);
  return e;
}

/* 1 with a datagram copied into buf (truncated to cap; *len is the copied length), 0 when none. */
int wl_udp_recv(struct wl_host *h, struct wl_udp *u, uint8_t *buf, size_t cap, size_t *len,
                uint8_t *addr, uint8_t *v6, uint16_t *port) {
  wl_current = h;
  if (u->len == 0) {
    return 0;
  }
  struct wl_dgram *d = &u->q[u->head];
  u16_t want = d->p->tot_len < cap ? d->p->tot_len : (u16_t)(cap > 0xffff ? 0xffff : cap);
  *len = h->f.pbuf_copy_partial(d->p, buf, want, 0);
  wl_read_addr(&d->addr, addr, v6);
  *port = d->port;
  u->bytes -= d->p->tot_len;
  h->f.pbuf_free(d->p);
  d->p = NULL;
  u->head = (u->head + 1) % u->cap;
  u->len--;
  return 1;
}

void wl_udp_close(struct wl_host *h, struct wl_udp *u) {
  wl_current = h;
  h->f.udp_remove(u->pcb);
  while (u->len > 0) {
    h->f.pbuf_free(u->q[u->head].p);
    u->head = (u->head + 1) % u->cap;
    u->len--;
  }
  free(u->q);
  free(u);
}

/* ---- ICMP echo client ---- */

struct wl_reply {
  uint8_t from[16];
  uint8_t v6;
  uint16_t seq;
  uint32_t payload_len;
};

struct wl_echo {
  struct wl_host *h;
  struct raw_pcb *pcb4, *pcb6;
  uint16_t ident;
  struct wl_reply *q;
  uint32_t cap, head, len;
};

static u8_t wl_echo_recv_cb(void *arg, struct raw_pcb *pcb, struct pbuf *p, const ip_addr_t *addr) {
  struct wl_echo *e = arg;
  struct wl_host *h = e->h;
  (void)pcb;
  /* p holds the IP header too. */
  uint8_t head[48];
  u16_t n = h->f.pbuf_copy_partial(p, head, sizeof(head), 0);
  if (n < 1) {
    return 0;
  }
  size_t off;
  uint8_t reply_type;
  if ((head[0] >> 4) == 4) {
    off = (size_t)(head[0] & 0x0f) * 4;
    reply_type = 0;
  } else {
    off = 40;
    reply_type = 129;
  }
  if (n < off + 8 || head[off] != reply_type || head[off + 1] != 0) {
    return 0;
  }
  uint16_t ident = (uint16_t)((head[off + 4] << 8) | head[off + 5]);
  if (ident != e->ident) {
    return 0;
  }
  if (e->len < e->cap) {
    struct wl_reply *r = &e->q[(e->head + e->len) % e->cap];
    wl_read_addr(addr, r->from, &r->v6);
    r->seq = (uint16_t)((head[off + 6] << 8) | head[off + 7]);
    r->payload_len = (uint32_t)(p->tot_len - off - 8);
    e->len++;
    h->events++;
  }
  h->f.pbuf_free(p);
  return 1;
}

struct wl_echo *wl_echo_open(struct wl_host *h, uint16_t ident, int v4, int v6) {
  wl_current = h;
  struct wl_echo *e = calloc(1, sizeof(*e));
  if (e == NULL) {
    return NULL;
  }
  e->h = h;
  e->ident = ident;
  e->cap = h->dgram_packets;
  e->q = calloc(e->cap, sizeof(*e->q));
  if (e->q == NULL) {
    free(e);
    return NULL;
  }
  if (v4) {
    e->pcb4 = h->f.raw_new_ip_type(IPADDR_TYPE_V4, IP_PROTO_ICMP);
    if (e->pcb4) {
      h->f.raw_recv(e->pcb4, wl_echo_recv_cb, e);
    }
  }
#if LWIP_IPV6
  if (v6) {
    e->pcb6 = h->f.raw_new_ip_type(IPADDR_TYPE_V6, IP6_NEXTH_ICMP6);
    if (e->pcb6) {
      /* lwIP fills in the ICMPv6 checksum, which covers the pseudo-header. */
      e->pcb6->chksum_reqd = 1;
      e->pcb6->chksum_offset = 2;
      h->f.raw_recv(e->pcb6, wl_echo_recv_cb, e);
    }
  }
#else
  (void)v6;
#endif
  return e;
}

static uint16_t wl_inet_checksum(const uint8_t *data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) {
    sum += (uint32_t)((data[i] << 8) | data[i + 1]);
  }
  if (len & 1) {
    sum += (uint32_t)(data[len - 1] << 8);
  }
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return (uint16_t)~sum;
}

int wl_echo_send(struct wl_host *h, struct wl_echo *e, const uint8_t *addr, int v6, uint16_t seq,
                 const uint8_t *payload, size_t len) {
  wl_current = h;
  struct raw_pcb *pcb = v6 ? e->pcb6 : e->pcb4;
  if (pcb == NULL) {
    return ERR_RTE;
  }
  if (len > 0xffff - 8 - 40) {
    return ERR_VAL;
  }
  struct pbuf *p = h->f.pbuf_alloc(PBUF_IP, (u16_t)(8 + len), PBUF_RAM);
  if (p == NULL) {
    return ERR_MEM;
  }
  uint8_t *m = p->payload;
  m[0] = v6 ? 128 : 8;
  m[1] = 0;
  m[2] = 0;
  m[3] = 0;
  m[4] = (uint8_t)(e->ident >> 8);
  m[5] = (uint8_t)e->ident;
  m[6] = (uint8_t)(seq >> 8);
  m[7] = (uint8_t)seq;
  if (len > 0) {
    memcpy(m + 8, payload, len);
  }
  if (!v6) {
    uint16_t sum = wl_inet_checksum(m, 8 + len);
    m[2] = (uint8_t)(sum >> 8);
    m[3] = (uint8_t)sum;
  }
  ip_addr_t dst;
  wl_make_addr(h, &dst, addr, v6);
  err_t err = h->f.raw_sendto(pcb, p, &dst);
  h->f.pbuf_free(p);
  return err;
}

int wl_echo_recv(struct wl_host *h, struct wl_echo *e, uint8_t *from, uint8_t *v6, uint16_t *seq,
                 uint32_t *payload_len) {
  (void)h;
  if (e->len == 0) {
    return 0;
  }
  struct wl_reply *r = &e->q[e->head];
  memcpy(from, r->from, 16);
  *v6 = r->v6;
  *seq = r->seq;
  *payload_len = r->payload_len;
  e->head = (e->head + 1) % e->cap;
  e->len--;
  return 1;
}

void wl_echo_close(struct wl_host *h, struct wl_echo *e) {
  wl_current = h;
  if (e->pcb4) {
    h->f.raw_remove(e->pcb4);
  }
  if (e->pcb6) {
    h->f.raw_remove(e->pcb6);
  }
  free(e->q);
  free(e);
}

/* ---- driving the host ---- */

/* A test hook (TEST_ASSERT_ENV on the Rust side): misuse the raw API on purpose, by taking a
   window update on a listening pcb, so that lwIP's own assertion "don't call tcp_recved for
   listen-pcbs" fires and abort() ends the process, exactly as a genuine lwIP bug would. */
void wl_test_assert(struct wl_host *h) {
  wl_current = h;
  struct tcp_pcb *pcb = h->f.tcp_new_ip_type(IPADDR_TYPE_ANY);
  if (pcb == NULL) {
    return;
  }
  ip_addr_t any;
  wl_any_addr(&any, IPADDR_TYPE_ANY);
  if (h->f.tcp_bind(pcb, &any, 0) != ERR_OK) {
    h->f.tcp_close(pcb);
    return;
  }
  struct tcp_pcb *listener = h->f.tcp_listen_with_backlog(pcb, 1);
  if (listener == NULL) {
    h->f.tcp_close(pcb);
    return;
  }
  h->f.tcp_recved(listener, 1);
}

void wl_set_now(struct wl_host *h, uint32_t now_ms) { h->now_ms = now_ms; }

void wl_set_tx(struct wl_host *h, void *tx_ctx) { h->tx_ctx = tx_ctx; }

uint64_t wl_events(const struct wl_host *h) { return h->events; }

/* Hands one received frame to lwIP, copied into a pbuf lwIP owns. */
void wl_input(struct wl_host *h, const uint8_t *frame, size_t len) {
  wl_current = h;
  if (len == 0 || len > 0xffff) {
    return;
  }
  /* PBUF_RAM, one contiguous buffer: Debian's liblwip sizes its PBUF_POOL buffers smaller
   * than pbuf_alloc fills them (pbuf_take of a pool chain writes past the end). */
  struct pbuf *p = h->f.pbuf_alloc(PBUF_RAW, (u16_t)len, PBUF_RAM);
  if (p == NULL) {
    return;
  }
  h->f.pbuf_take(p, frame, (u16_t)len);
  if (h->netif.input(p, &h->netif) != ERR_OK) {
    h->f.pbuf_free(p);
  }
}

static void wl_run_callbacks(struct wl_host *h) {
  /* Bounded: a callback may queue another (loopback answering loopback). */
  for (int round = 0; round < 64 && h->callbacks_len > 0; round++) {
    size_t n = h->callbacks_len;
    for (size_t i = 0; i < n; i++) {
      struct wl_callback cb = h->callbacks[i];
      cb.fn(cb.ctx);
    }
    memmove(h->callbacks, h->callbacks + n, (h->callbacks_len - n) * sizeof(*h->callbacks));
    h->callbacks_len -= n;
  }
}

/* Everything due at the current time: loopback deliveries, queued TCP output, timers. */
void wl_poll(struct wl_host *h) {
  wl_current = h;
  wl_run_callbacks(h);
  wl_tcp_sweep(h);
  wl_run_callbacks(h);
  h->f.sys_check_timeouts();
  wl_run_callbacks(h);
  wl_tcp_sweep(h);
  wl_run_callbacks(h);
}

/* 1 when something waits for a poll at the current time. */
int wl_busy(const struct wl_host *h) {
  if (h->callbacks_len > 0) {
    return 1;
  }
  for (const struct wl_tcp *c = h->tcps; c != NULL; c = c->next) {
    if (c->needs_output && c->pcb != NULL) {
      return 1;
    }
  }
  return 0;
}

/* Milliseconds from now until lwIP's next timer, or UINT32_MAX when none is set. */
uint32_t wl_sleeptime(struct wl_host *h) {
  wl_current = h;
  return h->f.sys_timeouts_sleeptime();
}

void wl_host_free(struct wl_host *h) {
  wl_current = h;
  h->tx_ctx = NULL; /* whatever is sent while tearing down goes nowhere */
  while (h->tcps != NULL) {
    struct wl_tcp *c = h->tcps;
    if (c->pcb != NULL && !c->listener) {
      h->f.tcp_arg(c->pcb, NULL);
      h->f.tcp_abort(c->pcb);
      c->pcb = NULL;
    }
    if (c->listener) {
      c->accepted_len = 0; /* they are in the list themselves */
    }
    wl_tcp_release(h, c);
  }
  wl_current = NULL;
  dlclose(h->dl);
  close(h->fd);
  free(h->callbacks);
  free(h->scratch);
  free(h);
}
