package main

import "net"

func netListenUDP() (net.PacketConn, error) { return net.ListenPacket("udp4", "127.0.0.1:0") }
