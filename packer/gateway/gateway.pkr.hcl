# The regional gateway image: edge-gateway and its relay, installed, hardened and
# enabled (systemd/edge-gateway.service, systemd/edge-relay.service), behind the NLB.
#
#   scripts/release                       # dist/edgepipe-<version>-linux-x86_64.tar.gz
#   packer build -var kms_key_id=alias/amis packer/gateway
#
# Local bake without the supply-chain steps: -var sbom=false -var sign=false.

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "instance_type" {
  type    = string
  default = "c7i.xlarge"
}

variable "kms_key_id" {
  type        = string
  description = "KMS key (id, ARN or alias/…) that encrypts the image's root volume."
}

variable "release_tarball" {
  type        = string
  description = "The tarball scripts/release writes."
  default     = "../../dist/edgepipe-0.1.0-linux-x86_64.tar.gz"
}

variable "version" {
  type    = string
  default = "0.1.0"
}

variable "sbom" {
  type        = bool
  description = "Write a CycloneDX SBOM of the image's edgepipe binaries."
  default     = true
}

variable "sign" {
  type        = bool
  description = "Sign the manifest and the SBOM with cosign."
  default     = true
}

variable "cosign_key" {
  type    = string
  default = "awskms:///alias/edgepipe-cosign"
}

locals {
  stamp = formatdate("YYYYMMDD-hhmmss", timestamp())
}

source "amazon-ebs" "gateway" {
  region        = var.region
  instance_type = var.instance_type
  ami_name      = "edgepipe-gateway-${var.version}-${local.stamp}"
  source_ami_filter {
    filters = {
      name                = "al2023-ami-2023.*-x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["amazon"]
    most_recent = true
  }
  # SSH is for the bake only: the image disables sshd (scripts/install.sh); hosts are
  # reached through SSM, whose agent the base image ships and the image keeps.
  ssh_username = "ec2-user"
  communicator = "ssh"

  encrypt_boot = true
  kms_key_id   = var.kms_key_id
  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 16
    volume_type           = "gp3"
    encrypted             = true
    kms_key_id            = var.kms_key_id
    delete_on_termination = true
  }

  # IMDSv2 only: on the bake instance, and on every instance launched from the image.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  imds_support = "v2.0"

  tags = {
    Name      = "edgepipe-gateway"
    edgepipe  = var.version
    BuildTime = local.stamp
  }
}

build {
  sources = ["source.amazon-ebs.gateway"]

  provisioner "file" {
    source      = var.release_tarball
    destination = "/tmp/edgepipe.tar.gz"
  }

  provisioner "shell" {
    script           = "${path.root}/../scripts/install.sh"
    environment_vars = ["EDGEPIPE_ROLE=gateway", "EDGEPIPE_TARBALL=/tmp/edgepipe.tar.gz"]
    execute_command  = "sudo -E bash '{{ .Path }}'"
  }

  post-processor "manifest" {
    output     = "edgepipe-gateway-manifest.json"
    strip_path = true
  }

  post-processor "shell-local" {
    environment_vars = [
      "SBOM=${var.sbom}",
      "SIGN=${var.sign}",
      "COSIGN_KEY=${var.cosign_key}",
      "IMAGE=edgepipe-gateway",
    ]
    script = "${path.root}/../scripts/supply-chain.sh"
  }
}
