/*
 * server.h - the pmd's event loop: the Unix socket that tasks connect to,
 * one session per connection, and the signals that stop it.
 *
 * One thread runs the loop and owns all pmd state. Each request is read
 * whole (one SEQPACKET datagram), checked against pm_proto.h's rules, handed
 * to the core's decode-then-invoke operation, and answered. A session that
 * breaks the framing (bad magic or version, a truncated or oversized
 * datagram) or does not read its replies is closed; any other bad request
 * gets an error reply and the session goes on. Descriptors a task sends
 * are closed unread.
 */
#ifndef PMD_SERVER_H
#define PMD_SERVER_H

#include <stdbool.h>

#include "config.h"
#include "core.h"

struct pmd_server;

error_t pmd_server_create(const struct pmd_config *cfg, struct pmd_core *core,
			  struct pmd_server **srv_out);
/* Runs until SIGTERM or SIGINT. */
error_t pmd_server_run(struct pmd_server *srv);
/* One turn of that loop, waiting at most max_ms for an event (-1: as
 * long as the loop would); *stop when a signal asks the pmd to stop.
 * For those that drive the pmd themselves (the fuzz targets). */
error_t pmd_server_turn(struct pmd_server *srv, int max_ms, bool *stop);
/* Ends every session (their tasks die) and removes the socket. */
void pmd_server_destroy(struct pmd_server *srv);

#endif
