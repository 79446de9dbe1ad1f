"""TecoGAN plugin for prunekit: FRNet networks and pruning layout, REDS/Vid4/ToS3 data,
the official PSNR/SSIM/LPIPS/tOF/tLP metrics, the FRVSR/TecoGAN training task and benchmark."""
