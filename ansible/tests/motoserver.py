"""moto's server (`python motoserver.py ARGS`, moto_server's arguments), with the resource types
its DescribeTags reports for NAT gateways and Elastic IPs named as AWS names them.

AWS's DescribeTags filter says `natgateway` and `elastic-ip`; moto 5.2 reports `nat-gateway` and
`vpc-elastic-ip`, so amazon.aws, which asks with AWS's names, finds no tag on either, tags it
again and reports a change on every run. Nothing else in moto is changed.
"""

import sys

from moto.ec2 import utils
from moto.server import main

utils.EC2_PREFIX_TO_RESOURCE.update({"nat": "natgateway", "eipalloc": "elastic-ip"})

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
