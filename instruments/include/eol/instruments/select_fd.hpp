// eol/instruments/select_fd.hpp — descriptors that select()-based code can take.
//
// libmodbus waits with select() (connect, receive). An fd_set holds only
// descriptors below FD_SETSIZE (1024); a higher one makes glibc abort the
// process ("bit out of range 0 - FD_SETSIZE"). A process that holds many
// sockets (a simulator under a connection flood, a station serving many
// panel clients) gets such numbers from socket()/accept()/open(). Every
// descriptor handed to libmodbus goes through fd_below_setsize() first: the
// Modbus client (modbus_client.cpp) and the simulated Modbus servers
// (eol/sim/modbus_server.hpp) refuse the connection when it fails.
#pragma once

namespace eol::instruments {

/// `fd` itself when it is below FD_SETSIZE; else a duplicate on the lowest
/// free descriptor (≥ 3) when that is below FD_SETSIZE, with `fd` closed;
/// else -1, with `fd` left open (the caller closes or keeps it). Close-on-exec
/// is set on a duplicate.
int fd_below_setsize(int fd) noexcept;

}  // namespace eol::instruments
