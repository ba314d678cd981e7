/*
 * test_fabric_fork.c - two processes on the test address (PM_TEST_ADDR,
 * else 127.0.0.1): the parent drives reads, writes and messages against a
 * child that only serves (polls and echoes messages). Then a second child
 * is killed, or stopped, with operations in flight: every one of them is
 * reported within the deadline, the parent does not hang, and the first
 * child is still served.
 *
 * A child runs this program afresh (fork, then exec with --serve) and
 * opens its endpoint there: a verbs device context may not cross fork(),
 * and the parent's libraries hold one once its endpoint is open.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fab_test.h"

#define REGION     ((size_t)4 << 20)
#define SLACK      8192
#define MSG_SIZE   2048
#define TIMEOUT_MS 1500 /* long enough for 4 MiB under ThreadSanitizer */
#define CHILD_LIFE_MS 60000

struct hello {                  /* child -> parent over the socketpair */
    struct fab_name name;
    struct fab_rkey rkey;
};

struct child {
    pid_t           pid;
    fab_peer_t      peer;
    struct fab_rkey rkey;
};

static struct fab_ep *ep;
static struct fab_mr *mr;
static uint8_t *buf;
static struct child server;

static void xwrite(int fd, const void *p, size_t len)
{
    if (write(fd, p, len) != (ssize_t)len)
        _exit(3);
}

static int xread(int fd, void *p, size_t len)
{
    return read(fd, p, len) == (ssize_t)len ? 0 : EIO;
}

/* The child: one endpoint, one region filled with a known pattern, echo
 * every message; exits on "quit", after CHILD_LIFE_MS, or with its parent. */
static void serve(int sock)
{
    struct fab_attr attr;
    struct fab_ep *cep;
    struct fab_mr *cmr;
    struct fab_name pname;
    struct hello h;
    struct fab_cqe c[16];
    fab_peer_t parent;
    uint8_t *cbuf = aligned_alloc(4096, REGION + SLACK);
    uint64_t key, end = ft_now_ms() + CHILD_LIFE_MS;
    size_t n, i;

    /* cmocka's handlers must not catch a crash here and run the tests
     * again in the child. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    ft_attr(&attr, TIMEOUT_MS, 0, MSG_SIZE);
    if (!cbuf || fab_ep_open(&attr, &cep))
        _exit(2);
    ft_fill(cbuf, REGION + SLACK, 42);
    if (fab_key_random(cep, &key) ||
        fab_mr_reg(cep, cbuf, REGION + SLACK, FAB_ACCESS_LOCAL |
                   FAB_ACCESS_REMOTE_READ | FAB_ACCESS_REMOTE_WRITE, key, &cmr) ||
        fab_ep_name(cep, &h.name) || fab_mr_rkey(cmr, &h.rkey))
        _exit(2);
    xwrite(sock, &h, sizeof(h));
    if (xread(sock, &pname, sizeof(pname)) ||
        fab_peer_insert(cep, &pname, &parent))
        _exit(2);
    while (ft_now_ms() < end) {
        if (fab_ep_poll(cep, c, 16, &n))
            _exit(4);
        for (i = 0; i < n; i++) {
            if (c[i].op != FAB_OP_RECV || c[i].status)
                continue;
            if (c[i].len == 4 && !memcmp(c[i].data, "quit", 4))
                goto out;
            /* Echo. fab_send() copies, and a full queue only delays the
             * echo: the slot frees up as the parent progresses. */
            if (fab_send(cep, parent, c[i].data, c[i].len, NULL))
                _exit(5);
        }
    }
out:
    fab_mr_dereg(cmr);
    fab_ep_close(cep);
    free(cbuf);
    _exit(0);
}

static void child_start(struct child *ch)
{
    struct fab_name name;
    struct hello h;
    char fd[16];
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fflush(NULL);
    ch->pid = fork();
    assert_true(ch->pid >= 0);
    if (ch->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        snprintf(fd, sizeof(fd), "%d", sv[1]);
        if (fcntl(sv[1], F_SETFD, 0) == 0)
            execl("/proc/self/exe", "test_fabric_fork", "--serve", fd,
                  (char *)NULL);
        _exit(6);
    }
    close(sv[1]);
    assert_int_equal(xread(sv[0], &h, sizeof(h)), 0);
    assert_int_equal(fab_ep_name(ep, &name), 0);
    xwrite(sv[0], &name, sizeof(name));
    close(sv[0]);
    assert_int_equal(fab_peer_insert(ep, &h.name, &ch->peer), 0);
    ch->rkey = h.rkey;
}

static void child_reap(struct child *ch)
{
    int st;

    assert_int_equal(waitpid(ch->pid, &st, 0), ch->pid);
    ch->pid = 0;
}

static struct fab_cqe wait_one(void)
{
    struct fab_cqe c = { 0 };

    assert_int_equal(ft_collect(&ep, 1, &c, 1, 10000), 1);
    return c;
}

static int setup(void **state)
{
    struct fab_attr attr;
    uint64_t key;

    (void)state;
    ft_log_install();
    ft_attr(&attr, TIMEOUT_MS, 256, MSG_SIZE);
    /* Probe first, so that a missing provider skips before any fork. */
    ep = ft_ep_open_or_skip(&attr);
    buf = aligned_alloc(4096, REGION + SLACK);
    assert_non_null(buf);
    assert_int_equal(fab_key_random(ep, &key), 0);
    assert_int_equal(fab_mr_reg(ep, buf, REGION + SLACK, FAB_ACCESS_LOCAL, key,
                                &mr), 0);
    child_start(&server);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (server.pid) {
        fab_send(ep, server.peer, "quit", 4, NULL);
        ft_spin(&ep, 1, 100);
        kill(server.pid, SIGKILL);
        child_reap(&server);
    }
    assert_int_equal(fab_mr_dereg(mr), 0);
    assert_int_equal(fab_ep_close(ep), 0);
    free(buf);
    return 0;
}

static int check_logs(void **state)
{
    (void)state;
    assert_int_equal(ft_log_errors, 0);
    return 0;
}

static void rma(enum fab_op_type op, size_t off, uint64_t roff, size_t len)
{
    struct fab_cqe c;

    if (op == FAB_OP_READ)
        assert_int_equal(fab_read(ep, server.peer, mr, off, &server.rkey, roff,
                                  len, NULL), 0);
    else
        assert_int_equal(fab_write(ep, server.peer, mr, off, &server.rkey, roff,
                                   len, NULL), 0);
    c = wait_one();
    assert_int_equal(c.status, 0);
    assert_int_equal(c.op, op);
}

static void test_fork_rw_sizes(void **state)
{
    uint8_t *expect = malloc(REGION + SLACK);
    size_t len, off, roff;
    uint32_t seed = 7;

    (void)state;
    assert_non_null(expect);
    /* The child's region starts with pattern 42: read it as is. */
    ft_fill(expect, REGION + SLACK, 42);
    memset(buf, 0, REGION + SLACK);
    rma(FAB_OP_READ, 0, 0, REGION + SLACK);
    assert_memory_equal(buf, expect, REGION + SLACK);

    /* Write a fresh pattern, clear, read it back: 1 byte to 4 MiB at
     * unaligned offsets on both sides. */
    for (len = 1; len <= REGION; len = len * 2 + (len < 64 ? 1 : 0)) {
        off = (len * 7) % 4093;
        roff = (len * 13) % 4091 + 1;
        if (off + len > REGION + SLACK)
            off = 1;
        if (roff + len > REGION + SLACK)
            roff = 3;
        ft_fill(buf + off, len, seed);
        rma(FAB_OP_WRITE, off, roff, len);
        memset(buf + off, 0, len);
        rma(FAB_OP_READ, off, roff, len);
        ft_fill(expect, len, seed);
        assert_memory_equal(buf + off, expect, len);
        seed++;
    }
    free(expect);
}

static void test_fork_many_outstanding(void **state)
{
    enum { N = 200, CHUNK = 8192 };
    struct fab_cqe *c = calloc(N, sizeof(*c));
    size_t i, n;

    (void)state;
    ft_fill(buf, (size_t)N * CHUNK, 1234);
    for (i = 0; i < N; i++)
        assert_int_equal(fab_write(ep, server.peer, mr, i * CHUNK,
                                   &server.rkey, i * CHUNK, CHUNK, NULL), 0);
    n = ft_collect(&ep, 1, c, N, 20000);
    assert_int_equal(n, N);
    for (i = 0; i < N; i++)
        assert_int_equal(c[i].status, 0);
    memset(buf, 0, (size_t)N * CHUNK);
    for (i = 0; i < N; i++)
        assert_int_equal(fab_read(ep, server.peer, mr, i * CHUNK,
                                  &server.rkey, i * CHUNK, CHUNK, NULL), 0);
    n = ft_collect(&ep, 1, c, N, 20000);
    assert_int_equal(n, N);
    for (i = 0; i < N; i++)
        assert_int_equal(c[i].status, 0);
    ft_fill(buf + (size_t)N * CHUNK, (size_t)N * CHUNK, 1234);
    assert_memory_equal(buf, buf + (size_t)N * CHUNK, (size_t)N * CHUNK);
    free(c);
}

/* Round trips of every size from 0 to the limit: the echo comes back
 * whole and in order. */
static void test_fork_messages(void **state)
{
    uint8_t msg[MSG_SIZE];
    struct fab_cqe c;
    size_t len, n;
    uint64_t end;
    bool echoed;

    (void)state;
    for (len = 0; len <= MSG_SIZE; len++) {
        ft_fill(msg, len, (uint32_t)len + 5);
        assert_int_equal(fab_send(ep, server.peer, msg, len, NULL), 0);
        echoed = false;
        end = ft_now_ms() + 5000;
        while (!echoed && ft_now_ms() < end) {
            assert_int_equal(fab_ep_poll(ep, &c, 1, &n), 0);
            if (!n)
                continue;
            assert_int_equal(c.status, 0);
            if (c.op != FAB_OP_RECV)
                continue;
            assert_int_equal(c.len, len);
            assert_int_equal(c.peer, server.peer);
            assert_memory_equal(c.data, msg, len);
            echoed = true;
        }
        assert_true(echoed);
    }
    assert_int_equal(fab_send(ep, server.peer, msg, MSG_SIZE + 1, NULL),
                     EMSGSIZE);
    ft_spin(&ep, 1, 20);
}

/* Many small messages back to back: the echoes keep their order. */
static void test_fork_message_order(void **state)
{
    enum { N = 3000 };
    uint32_t sent = 0, got = 0, v;
    struct fab_cqe c[16];
    size_t n, i;
    uint64_t end = ft_now_ms() + 20000;
    int err;

    (void)state;
    while (got < N && ft_now_ms() < end) {
        /* Keep at most 64 in flight so that the child's echoes fit. */
        while (sent < N && sent - got < 64) {
            err = fab_send(ep, server.peer, &sent, sizeof(sent), NULL);
            if (err == EAGAIN)
                break;
            assert_int_equal(err, 0);
            sent++;
        }
        assert_int_equal(fab_ep_poll(ep, c, 16, &n), 0);
        for (i = 0; i < n; i++) {
            assert_int_equal(c[i].status, 0);
            if (c[i].op != FAB_OP_RECV)
                continue;
            memcpy(&v, c[i].data, sizeof(v));
            assert_int_equal(v, got);
            got++;
        }
    }
    assert_int_equal(got, N);
    ft_spin(&ep, 1, 20);
}

/* Posts a mix of writes, reads and sends to ch; returns how many. */
static size_t post_burst(struct child *ch, size_t n)
{
    size_t i, posted = 0;
    int err;

    for (i = 0; i < n; i++) {
        if (i % 3 == 0)
            err = fab_write(ep, ch->peer, mr, (i % 16) * 262144, &ch->rkey,
                            (i % 16) * 262144, 262144, NULL);
        else if (i % 3 == 1)
            err = fab_read(ep, ch->peer, mr, (i % 16) * 262144, &ch->rkey,
                           (i % 16) * 262144, 262144, NULL);
        else
            err = fab_send(ep, ch->peer, "burst", 5, NULL);
        assert_int_equal(err, 0);
        posted++;
    }
    return posted;
}

/* Waits for n completions of operations; returns the time it took.
 * rma_failed (if not NULL) counts the failed reads and writes. */
static uint64_t reap_rma(size_t n, unsigned *failed, unsigned *rma_failed)
{
    struct fab_cqe c[32];
    uint64_t t0 = ft_now_ms();
    size_t got = 0, m, i;

    *failed = 0;
    if (rma_failed)
        *rma_failed = 0;
    while (got < n && ft_now_ms() - t0 < TIMEOUT_MS * 6) {
        assert_int_equal(fab_ep_poll(ep, c, 32, &m), 0);
        for (i = 0; i < m; i++) {
            if (c[i].op == FAB_OP_RECV)
                continue;
            got++;
            if (c[i].status)
                (*failed)++;
            if (c[i].status && c[i].op != FAB_OP_SEND && rma_failed)
                (*rma_failed)++;
        }
    }
    assert_int_equal(got, n);
    return ft_now_ms() - t0;
}

static uint64_t reap(size_t n, unsigned *failed)
{
    return reap_rma(n, failed, NULL);
}

static void expect_server_alive(void)
{
    ft_log_errors = 0;
    ft_fill(buf, 65536, 99);
    rma(FAB_OP_WRITE, 0, 0, 65536);
    memset(buf, 0, 65536);
    rma(FAB_OP_READ, 0, 0, 65536);
    ft_fill(buf + 65536, 65536, 99);
    assert_memory_equal(buf, buf + 65536, 65536);
}

static void expect_no_leak(struct child *ch)
{
    struct fab_info info;
    uint64_t end = ft_now_ms() + 3000;

    /* Removing the peer gives back what the provider still held. */
    assert_int_equal(fab_peer_remove(ep, ch->peer), 0);
    do {
        ft_spin(&ep, 1, 10);
        assert_int_equal(fab_ep_info(ep, &info), 0);
    } while (info.inflight && ft_now_ms() < end);
    printf("after removing the peer: %u in flight, %u abandoned\n",
           info.inflight, info.abandoned);
    assert_int_equal(info.inflight, 0);
}

static void test_fork_peer_killed(void **state)
{
    struct child victim;
    struct fab_info info;
    unsigned failed;
    uint64_t dt;
    size_t n;

    (void)state;
    child_start(&victim);
    /* Connected and served once. */
    {
        struct fab_cqe c;
        assert_int_equal(fab_read(ep, victim.peer, mr, 0, &victim.rkey, 0, 4096,
                                  NULL), 0);
        c = wait_one();
        assert_int_equal(c.status, 0);
    }
    n = post_burst(&victim, 96);
    kill(victim.pid, SIGKILL);
    child_reap(&victim);
    dt = reap(n, &failed);
    printf("killed peer: %zu operations reported in %llu ms, %u failed\n", n,
           (unsigned long long)dt, failed);
    assert_true(dt <= TIMEOUT_MS + 500);
    /* Over tcp the peer's own progress serves reads and writes, so some
     * fail; a verbs device may serve them all before the peer is gone. */
    assert_int_equal(fab_ep_info(ep, &info), 0);
    if (!strstr(info.provider, "verbs"))
        assert_true(failed > 0);
    /* A new operation to the dead peer fails too, within the deadline. */
    assert_int_equal(fab_read(ep, victim.peer, mr, 0, &victim.rkey, 0, 4096,
                              NULL), 0);
    dt = reap(1, &failed);
    assert_int_equal(failed, 1);
    assert_true(dt <= TIMEOUT_MS + 500);
    expect_no_leak(&victim);
    expect_server_alive();
}

/*
 * A stopped peer answers nothing that needs its CPU: messages beyond the
 * receive buffers it had posted fail by their deadline. On verbs the
 * device serves reads and writes without the peer's CPU, so those
 * succeed; over tcp they need the peer's progress and fail too.
 */
static void test_fork_peer_stopped(void **state)
{
    struct child victim;
    struct fab_info info;
    unsigned failed, rma_failed;
    uint64_t dt;
    size_t n;

    (void)state;
    child_start(&victim);
    {
        struct fab_cqe c;
        assert_int_equal(fab_read(ep, victim.peer, mr, 0, &victim.rkey, 0, 4096,
                                  NULL), 0);
        c = wait_one();
        assert_int_equal(c.status, 0);
    }
    kill(victim.pid, SIGSTOP);
    n = post_burst(&victim, 96);
    /* More messages than a peer posts receive buffers for (64). */
    for (int i = 0; i < 100; i++, n++)
        assert_int_equal(fab_send(ep, victim.peer, "more", 4, NULL), 0);
    dt = reap_rma(n, &failed, &rma_failed);
    printf("stopped peer: %zu operations reported in %llu ms, %u failed "
           "(%u reads and writes)\n", n, (unsigned long long)dt, failed,
           rma_failed);
    assert_true(dt >= TIMEOUT_MS - 50 && dt <= TIMEOUT_MS + 500);
    assert_true(failed > 0);
    assert_int_equal(fab_ep_info(ep, &info), 0);
    if (strstr(info.provider, "verbs"))
        assert_int_equal(rma_failed, 0);
    expect_server_alive();
    /* A stopped peer's connection stays up, so the provider keeps what it
     * holds; once the peer dies for good, it lets go. */
    kill(victim.pid, SIGKILL);
    child_reap(&victim);
    expect_no_leak(&victim);
    expect_server_alive();
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fork_rw_sizes, check_logs),
        cmocka_unit_test_teardown(test_fork_many_outstanding, check_logs),
        cmocka_unit_test_teardown(test_fork_messages, check_logs),
        cmocka_unit_test_teardown(test_fork_message_order, check_logs),
        cmocka_unit_test_teardown(test_fork_peer_killed, check_logs),
        cmocka_unit_test_teardown(test_fork_peer_stopped, check_logs),
    };

    signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && !strcmp(argv[1], "--serve"))
        serve(atoi(argv[2])); /* a child, run afresh */
    return cmocka_run_group_tests_name("fabric_fork", tests, setup, teardown);
}
