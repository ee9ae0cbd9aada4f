//! Image cache: see the image cache helper.
