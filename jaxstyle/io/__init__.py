"""Reading and writing images, video frames and contact sheets; optical flow; colour transfer."""
