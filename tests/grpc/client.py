"""An independent gRPC client: stubs compiled from proto/secrets/v1/secrets.proto
with grpcio-tools into $GRPC_OUT, then put, get, a missing get, list and
register against $GRPC_TARGET as $X_SERVICE / $X_TOKEN, then the health
service (grpcio-health-checking) and server reflection (grpcio-reflection). Prints
`python grpc client: ok` when every check holds."""

import os
import sys
import uuid

from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.environ["GRPC_OUT"]

rc = protoc.main(
    [
        "grpc_tools.protoc",
        # The proto's own directory as the root: a top-level `secrets` package
        # would lose to Python's standard `secrets` module.
        f"-I{os.path.join(ROOT, 'proto', 'secrets', 'v1')}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        os.path.join(ROOT, "proto", "secrets", "v1", "secrets.proto"),
    ]
)
if rc != 0:
    sys.exit(f"protoc failed: {rc}")
sys.path.insert(0, OUT)

import time  # noqa: E402

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)
import secrets_pb2  # noqa: E402
import secrets_pb2_grpc  # noqa: E402

service, token = os.environ["X_SERVICE"], os.environ["X_TOKEN"]
channel = grpc.insecure_channel(os.environ["GRPC_TARGET"])
stub = secrets_pb2_grpc.SecretsServiceStub(channel)
who = [("x-service", service)]

put = stub.PutSecret(
    secrets_pb2.PutSecretRequest(secret_name="py/from-python", value="written by python", token=token),
    metadata=who,
)
assert put.version == 1, put

# The specification's client: the token in the body, `success` checked.
got = stub.GetSecret(
    secrets_pb2.GetSecretRequest(secret_name="py/from-python", token=token), metadata=who
)
assert got.success and got.value == b"written by python", got

missing = stub.GetSecret(
    secrets_pb2.GetSecretRequest(secret_name="py/absent", description="wanted", token=token),
    metadata=who,
)
assert not missing.success and missing.error_message == "secret_not_found", missing

listed = stub.ListSecrets(secrets_pb2.ListSecretsRequest(project="py", token=token), metadata=who)
assert [s.secret_name for s in listed.secrets] == ["py/from-python"], listed

# WatchSecret: the current state, then the next write, metadata only.
watch = stub.WatchSecret(
    secrets_pb2.WatchSecretRequest(secret_name="py/from-python", token=token),
    metadata=who,
    timeout=30,
)
current = next(watch)
assert (current.change, current.state, current.version) == ("current", "live", 1), current
stub.PutSecret(
    secrets_pb2.PutSecretRequest(secret_name="py/from-python", value="second value", token=token),
    metadata=who,
)
changed = next(watch)
assert (changed.change, changed.version) == ("updated", 2), changed
assert b"second value" not in changed.SerializeToString(), changed
watch.cancel()
got = stub.GetSecret(
    secrets_pb2.GetSecretRequest(secret_name="py/from-python", version=1, token=token), metadata=who
)
assert got.success and got.value == b"written by python", got

# Identity in the metadata only; a wrong token is UNAUTHENTICATED.
try:
    stub.GetSecret(
        secrets_pb2.GetSecretRequest(secret_name="py/from-python"),
        metadata=[("x-service", service), ("x-token", "wrong-token-0123456789")],
    )
    sys.exit("a wrong token was accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
    assert e.details().startswith("unauthorized: "), e.details()
    codes = dict(e.trailing_metadata() or ())
    assert codes.get("x-error-code") == "unauthorized", codes

reg = stub.RegisterToken(
    secrets_pb2.RegisterTokenRequest(
        service_name="py-agent", service_version="0.1", token=uuid.uuid4().hex + uuid.uuid4().hex
    )
)
assert reg.status == "pending_approval", reg

# grpc.health.v1 (grpcio-health-checking): the service reports SERVING.
health = health_pb2_grpc.HealthStub(channel)
for attempt in range(50):
    try:
        status = health.Check(health_pb2.HealthCheckRequest(service="secrets.v1.SecretsService")).status
    except grpc.RpcError:
        status = None
    if status == health_pb2.HealthCheckResponse.SERVING:
        break
    time.sleep(0.1)
else:
    sys.exit(f"health never SERVING (last {status})")

# Server reflection (grpcio-reflection): the services and GetSecret's shape.
reflected = ProtoReflectionDescriptorDatabase(channel)
services = reflected.get_services()
assert "secrets.v1.SecretsService" in services and "grpc.health.v1.Health" in services, services
from google.protobuf.descriptor_pool import DescriptorPool  # noqa: E402

pool = DescriptorPool(reflected)
method = pool.FindServiceByName("secrets.v1.SecretsService").FindMethodByName("GetSecret")
fields = {f.name: f.number for f in method.input_type.fields}
assert fields["secret_name"] == 1 and fields["description"] == 2 and fields["token"] == 3, fields

print("python grpc client: ok")
