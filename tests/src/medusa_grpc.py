#!/usr/bin/env python3
"""Medusa's gRPC server and a client of it, for the tests' stand-in k8ssandra operator
(tests/src/medusa_operator.rs). Run with the Medusa venv's python.

  medusa_grpc.py serve INI MAPPING_DIR
      Medusa's own gRPC server (medusa.service.grpc.server) for INI, on 127.0.0.1 only (the
      server binds [::] and no setting narrows it) and with PrepareRestore's mappings in
      MAPPING_DIR (it writes them under /var/lib/cassandra otherwise).
  medusa_grpc.py call HOST:PORT RPC JSON
      One RPC (`AsyncBackup`, `BackupStatus`, `GetBackup`, `GetBackups`, `PurgeBackups`,
      `PrepareRestore`, ...) with JSON as its request; prints the response as JSON, or
      {"error": CODE, "details": TEXT} when the RPC fails. Exits 0 either way.
"""
import asyncio
import json
import sys


def serve(ini, mapping_dir):
    from grpc import aio

    real_server = aio.server

    def local_server(*args, **kwargs):
        server = real_server(*args, **kwargs)
        add = server.add_insecure_port
        server.add_insecure_port = lambda address: add(address.replace("[::]", "127.0.0.1"))
        return server

    aio.server = local_server
    from medusa.service.grpc import server as medusa_server

    medusa_server.RESTORE_MAPPING_LOCATION = mapping_dir

    async def main():
        # Made inside the loop, as medusa's own main does: the aio server binds to it.
        await medusa_server.Server(ini).serve()

    asyncio.run(main())


def call(target, rpc_name, request_json):
    import grpc
    from google.protobuf import json_format
    from medusa.service.grpc import medusa_pb2 as pb
    from medusa.service.grpc import medusa_pb2_grpc as rpc

    stub = rpc.MedusaStub(grpc.insecure_channel(target))
    method = getattr(stub, rpc_name)
    request_type = {
        "AsyncBackup": pb.BackupRequest,
        "Backup": pb.BackupRequest,
        "BackupStatus": pb.BackupStatusRequest,
        "GetBackup": pb.GetBackupRequest,
        "GetBackups": pb.GetBackupsRequest,
        "DeleteBackup": pb.DeleteBackupRequest,
        "PurgeBackups": pb.PurgeBackupsRequest,
        "PrepareRestore": pb.PrepareRestoreRequest,
    }[rpc_name]
    request = json_format.ParseDict(json.loads(request_json), request_type())
    try:
        response = method(request, timeout=600)
        print(json_format.MessageToJson(response, always_print_fields_with_no_presence=True))
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "details": e.details()}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        call(sys.argv[2], sys.argv[3], sys.argv[4])
