-- First start of MariaDB: the three service databases, owned by the `ems` user
-- (created by the image from MARIADB_USER / MARIADB_PASSWORD_FILE).
CREATE DATABASE IF NOT EXISTS ems_web CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS ems_support CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS ems_monitor CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
GRANT ALL PRIVILEGES ON `ems\_%`.* TO 'ems'@'%';
FLUSH PRIVILEGES;
